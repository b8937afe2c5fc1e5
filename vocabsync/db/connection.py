"""Opening PostgreSQL connections with the timeouts and keepalives every link needs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.abc import Query
from psycopg.rows import TupleRow

from vocabsync.config import Settings
from vocabsync.errors import DatabaseUnavailableError

AsyncConn = psycopg.AsyncConnection[TupleRow]


async def connect(settings: Settings, purpose: str) -> AsyncConn:
    """An autocommit connection; TCP keepalives so a dead peer is noticed within seconds.

    ``purpose`` ends up in ``application_name`` so operators can tell the bridge's sessions apart
    in ``pg_stat_activity``.
    """
    try:
        return await psycopg.AsyncConnection.connect(
            settings.postgres_conninfo,
            autocommit=True,
            connect_timeout=max(1, round(settings.network_timeout)),
            application_name=f"vocabsync-{purpose}",
            keepalives=1,
            keepalives_idle=max(1, round(settings.health_check_interval)),
            keepalives_interval=max(1, round(settings.health_check_interval / 2)),
            keepalives_count=3,
        )
    except psycopg.Error as exc:
        raise DatabaseUnavailableError(
            f"cannot connect to PostgreSQL at {settings.postgres_display}: "
            f"{settings.redact(str(exc).strip())}"
        ) from None


def describe_pg_error(settings: Settings, exc: BaseException) -> str:
    """One line for logs: the error class and its message, with secrets removed."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return settings.redact(f"{type(exc).__name__}: {text}")


async def execute_with_deadline(
    conn: AsyncConn, query: Query, deadline_s: float, params: Sequence[Any] | None = None
) -> psycopg.AsyncCursor[TupleRow]:
    """Run ``query``; if no answer comes within ``deadline_s``, break the connection at once.

    Cancelling a psycopg query sends a cancel request and waits for the server to confirm, which
    on a half-open link (no answer, no error) takes another 10 s or more. A link that does not
    answer is dead to us: shut the socket down, so the pending read ends with a connection error
    right away, and let the caller reconnect and resync.
    """
    task = asyncio.ensure_future(conn.execute(query, params))  # type: ignore[arg-type]
    try:
        done, _ = await asyncio.wait({task}, timeout=deadline_s)
    except asyncio.CancelledError:
        # The caller is stopping: end the query the same quick way, then let the cancel through.
        await _abandon(conn, task)
        raise
    if task in done:
        return task.result()
    await _abandon(conn, task)
    raise DatabaseUnavailableError(f"PostgreSQL did not answer within {deadline_s:g} s")


async def _abandon(conn: AsyncConn, task: asyncio.Future[psycopg.AsyncCursor[TupleRow]]) -> None:
    """Break the connection under a pending query and let the query fail on its own."""
    shutdown_socket(conn)
    with contextlib.suppress(BaseException):
        done, _ = await asyncio.wait({task}, timeout=1.0)
        if not done:  # pragma: no cover - a shut-down socket always wakes the reader
            task.cancel()
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: the connection error is expected


def shutdown_socket(conn: AsyncConn) -> None:
    """End the connection's TCP stream without closing its file descriptor.

    Whoever waits on the socket sees end-of-file and fails with a connection error; the file
    descriptor stays owned by psycopg, so it cannot be reused under a pending read.
    """
    with contextlib.suppress(OSError, psycopg.Error):
        sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()
