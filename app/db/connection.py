"""Opening PostgreSQL connections with the timeouts and keepalives every link needs."""

from __future__ import annotations

import psycopg
from psycopg.rows import TupleRow

from app.config import Settings
from app.errors import DatabaseUnavailableError

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
