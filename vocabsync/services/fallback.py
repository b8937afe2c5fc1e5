"""When an instance reads through to PostgreSQL instead of serving its snapshot.

Only when it has no snapshot at all, or while it cannot hear the log (Redis unreachable, or sync
rolled back), and then at most once per ``fallback_max_age``: a traffic spike during an outage is
one query per interval per instance, not one per request (invariant 1).
"""

from __future__ import annotations

import time


class FallbackPolicy:
    """Remembers when the database was last read for fallback, and decides if it is due again."""

    def __init__(self) -> None:
        self.loaded_at: float | None = None

    def loaded(self) -> None:
        self.loaded_at = time.monotonic()

    def needs_read_through(self, has_snapshot: bool, in_fallback: bool, max_age: float) -> bool:
        if not has_snapshot:
            return True
        if not in_fallback:
            return False
        return self.loaded_at is None or time.monotonic() - self.loaded_at > max_age
