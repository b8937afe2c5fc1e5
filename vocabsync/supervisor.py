"""One supervised loop for every long-running connection of this tool (bridge and instances).

A *session* connects, resyncs and serves until a link fails. The supervisor runs sessions one
after another: after a failure it waits (first retry at once, then 5, 10, 20 ... s with jitter,
capped; see :class:`~vocabsync.backoff.Backoff`) and starts a new one; a session that got going
resets the backoff by calling ``healthy()``. A stop request cancels the running session and waits
a bounded time for it, so SIGTERM ends the process in seconds whatever a link is doing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Final

from vocabsync.backoff import Backoff

logger = logging.getLogger(__name__)

STOP_GRACE_SECONDS: Final = 4.0
"""A session must end within this after a stop request (SIGTERM must end a process within 5 s)."""

Session = Callable[[Callable[[], None]], Coroutine[Any, Any, None]]
"""``session(healthy)``: runs until a link fails; calls ``healthy()`` once it is serving."""


class Supervisor:
    """Runs sessions with backoff until :meth:`stop`."""

    def __init__(
        self,
        name: str,
        session: Session,
        backoff: Backoff,
        *,
        on_failure: Callable[[BaseException], None],
    ) -> None:
        self.name = name
        self.session = session
        self.backoff = backoff
        self.on_failure = on_failure
        self.sessions = 0
        self._stop = asyncio.Event()
        self.abandoned = False

    def stop(self) -> None:
        """Ask the loop to stop; safe from a signal handler."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self) -> None:
        self._stop.clear()
        while not self._stop.is_set():
            delay = self.backoff.next_delay()
            if delay and await self._wait_for_stop(delay):
                break
            self.sessions += 1
            task = asyncio.create_task(self.session(self.backoff.reset), name=self.name)
            stopper = asyncio.create_task(self._stop.wait(), name=f"{self.name}-stop")
            try:
                done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                await _cancel(task, STOP_GRACE_SECONDS)
                raise
            finally:
                stopper.cancel()
            if task not in done and not await _cancel(task, STOP_GRACE_SECONDS):
                self.abandoned = True
                logger.error(
                    "%s did not stop within %.0f s; abandoning it",
                    self.name,
                    STOP_GRACE_SECONDS,
                    extra={"action": "session_abandoned"},
                )
                return
            if task.cancelled():
                continue
            exc = task.exception()
            if exc is not None:
                self.on_failure(exc)

    async def _wait_for_stop(self, delay: float) -> bool:
        logger.info(
            "%s: reconnecting in %.1f s",
            self.name,
            delay,
            extra={"action": "reconnect_wait", "delay": delay},
        )
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=delay)
        except TimeoutError:
            return False
        return True


async def _cancel(task: asyncio.Task[None], grace: float) -> bool:
    """Cancel ``task`` and wait for it; True when it ended within ``grace`` seconds.

    The cancellation is repeated: a library that runs its own timeout around a read (redis-py
    does) can swallow one cancellation that lands together with its timeout (Python 3.11's
    ``asyncio.timeout`` uncancels), and the task would then go on waiting.
    """
    deadline = asyncio.get_running_loop().time() + grace
    while not task.done():
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return False
        task.cancel()
        await asyncio.wait({task}, timeout=min(0.2, remaining))
    return True
