"""Polling helpers: tests wait for conditions with a deadline, never with a bare sleep."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast, overload

T = TypeVar("T")


def _failure(message: str, timeout: float, last: object) -> AssertionError:
    prefix = f"{message}: " if message else ""
    return AssertionError(f"{prefix}condition not met within {timeout}s (last value: {last!r})")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "",
) -> T:
    """Call ``predicate`` until it returns something truthy and return that value.

    Raises AssertionError with ``message`` and the last value once ``timeout`` seconds passed.
    Exceptions raised by the predicate propagate immediately.
    """
    deadline = time.monotonic() + timeout
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise _failure(message, timeout, last)
        time.sleep(interval)


@overload
async def wait_until_async(
    predicate: Callable[[], Awaitable[T]],
    timeout: float = ...,  # noqa: ASYNC109
    interval: float = ...,
    message: str = ...,
) -> T: ...
@overload
async def wait_until_async(
    predicate: Callable[[], T],
    timeout: float = ...,  # noqa: ASYNC109
    interval: float = ...,
    message: str = ...,
) -> T: ...
async def wait_until_async(
    predicate: Callable[[], Awaitable[T] | T],
    timeout: float = 10.0,  # noqa: ASYNC109 - same signature as wait_until (polling deadline)
    interval: float = 0.02,
    message: str = "",
) -> T:
    """Async twin of :func:`wait_until`; ``predicate`` may return a value or an awaitable."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        last = cast(T, result)
        if last:
            return last
        if time.monotonic() >= deadline:
            raise _failure(message, timeout, last)
        await asyncio.sleep(interval)
