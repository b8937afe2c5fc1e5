"""Single-flight, coalescing execution of one piece of async work (ARCHITECTURE invariant 3).

Requests that arrive while a run is in progress cause exactly one follow-up run, at the highest
level any of them asked for, never a queue of runs. Every caller gets the outcome of the first
run that *started after* its request, so it never sees a result older than its request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class CoalescingRunner(Generic[T]):
    """Runs ``work(level, reasons)`` one at a time, coalescing the requests made meanwhile."""

    def __init__(self, work: Callable[[int, frozenset[str]], Awaitable[T]]) -> None:
        self._work = work
        self._level = 0
        self._reasons: set[str] = set()
        self._waiters: list[asyncio.Future[T]] = []
        self._task: asyncio.Task[None] | None = None
        self.runs = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def submit(self, level: int, reason: str) -> asyncio.Future[T]:
        """Ask for a run at ``level`` (at least 1); returns the future of that run's outcome."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        self._level = max(self._level, level, 1)
        self._reasons.add(reason)
        if not self.running:
            self._task = asyncio.create_task(self._drain(), name="vocabsync-refresh")
        return future

    async def request(self, level: int, reason: str) -> T:
        """Submit and wait; cancelling the caller does not cancel the shared run."""
        return await asyncio.shield(self.submit(level, reason))

    async def _drain(self) -> None:
        while self._level:
            level, reasons = self._level, frozenset(self._reasons)
            waiters = self._waiters
            self._level, self._reasons, self._waiters = 0, set(), []
            self.runs += 1
            try:
                result = await self._work(level, reasons)
            except asyncio.CancelledError:
                for waiter in waiters:
                    waiter.cancel()
                raise
            except Exception as exc:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                        # Mark retrieved: a caller that gave up must not cause a loop warning.
                        waiter.exception()
            else:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(result)

    async def close(self) -> None:
        """Cancel the run in progress and fail whoever still waits on it."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for waiter in self._waiters:
            waiter.cancel()
        self._waiters, self._level = [], 0
