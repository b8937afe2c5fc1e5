"""Reconnect delays: first retry at once, then doubling with jitter up to a cap.

The design document asks for retries after 5, 10, 20, 40 s ... up to 5 minutes. Jitter (+-10 % by
default) keeps a fleet of instances from reconnecting in lockstep after a shared outage. The
constants are plain attributes so tests can shrink them.
"""

from __future__ import annotations

import random


class Backoff:
    """Yields the delay before each reconnect attempt; :meth:`reset` after a healthy session."""

    def __init__(
        self,
        initial: float = 5.0,
        maximum: float = 300.0,
        jitter: float = 0.1,
        *,
        immediate: bool = True,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self.immediate = immediate
        self.attempt = 0

    def next_delay(self) -> float:
        """The delay before the next attempt (0 for the first one when ``immediate``)."""
        attempt = self.attempt
        self.attempt += 1
        if self.immediate:
            if attempt == 0:
                return 0.0
            attempt -= 1
        base = min(self.maximum, self.initial * float(2**attempt))
        spread = base * self.jitter
        return float(max(0.0, min(self.maximum, base + random.uniform(-spread, spread))))

    def reset(self) -> None:
        self.attempt = 0
