"""Opening PostgreSQL connections with the timeouts and keepalives every link needs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Sequence
from typing import Any, Final

import psycopg
from psycopg.abc import Query
from psycopg.rows import TupleRow

from vocabsync.config import Settings
from vocabsync.errors import DatabaseUnavailableError

logger = logging.getLogger(__name__)

AsyncConn = psycopg.AsyncConnection[TupleRow]

WRITABLE_PURPOSES: Final = frozenset({"bridge", "migrate", "check", "rollback", "status"})
"""Sessions that must reach the primary when DATABASE_URL lists several hosts: the bridge (LISTEN
and its leadership lock exist only there), the commands that change or inspect the schema and
compare Redis with the database. The instances' reads (``api``) go wherever DATABASE_URL says."""


async def connect(settings: Settings, purpose: str) -> AsyncConn:
    """An autocommit connection; TCP keepalives so a dead peer is noticed within seconds.

    ``purpose`` ends up in ``application_name`` so operators can tell the bridge's sessions apart
    in ``pg_stat_activity``. With several hosts in DATABASE_URL, libpq (through psycopg) tries
    them in order, each within the connect timeout; purposes in :data:`WRITABLE_PURPOSES` accept
    only a writable primary (:func:`~vocabsync.config.writable_conninfo`), so after a failover
    they land on the promoted server.
    """
    writable = purpose in WRITABLE_PURPOSES
    conninfo = settings.writable_postgres_conninfo if writable else settings.postgres_conninfo
    try:
        conn = await psycopg.AsyncConnection.connect(
            conninfo,
            autocommit=True,
            connect_timeout=max(1, round(settings.network_timeout)),
            application_name=f"vocabsync-{purpose}",
            keepalives=1,
            keepalives_idle=max(1, round(settings.health_check_interval)),
            keepalives_interval=max(1, round(settings.health_check_interval / 2)),
            keepalives_count=3,
        )
    except psycopg.Error as exc:
        wanted = " (a writable primary)" if conninfo != settings.postgres_conninfo else ""
        raise DatabaseUnavailableError(
            f"cannot connect to PostgreSQL{wanted} at {settings.postgres_display}: "
            f"{settings.redact(str(exc).strip())}"
        ) from None
    if len(settings.postgres_hosts) > 1:
        logger.info(
            "PostgreSQL session for %s on %s",
            purpose,
            server_of(conn),
            extra={"action": "postgres_connected", "server": server_of(conn)},
        )
    return conn


def server_of(conn: AsyncConn) -> str:
    """``host:port`` of the server a connection reached (which of several hosts it is)."""
    return f"{conn.info.host}:{conn.info.port}"


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
