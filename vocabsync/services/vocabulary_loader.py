"""VocabularyLoader: read the vocabulary from PostgreSQL in one round trip.

One SELECT returns every requested field (distinct, sorted, NULL and blank values dropped) and the
database snapshot it was read from, so the result carries an exact version (see
:func:`vocabsync.vocabulary.version_from_snapshot`). Table and column names come from the configured
:class:`~vocabsync.sources.SourceMap` and are quoted as identifiers, never pasted into SQL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import psycopg
from psycopg import errors as pg_errors, sql

from vocabsync.config import Settings, get_settings
from vocabsync.db.connection import AsyncConn, connect, describe_pg_error, execute_with_deadline
from vocabsync.errors import ConfigurationError, DatabaseUnavailableError
from vocabsync.sources import SourceMap
from vocabsync.vocabulary import FIELDS, Snapshot, version_from_snapshot

logger = logging.getLogger(__name__)

_BLANK = " \t\r\n"


def build_query(sources: SourceMap, fields: Iterable[str]) -> sql.Composed:
    """The single SELECT that loads ``fields`` together with the snapshot's xmax and xip count."""
    columns: list[sql.Composable] = [
        sql.SQL("pg_snapshot_xmax(s)::text::bigint"),
        sql.SQL("(SELECT count(*) FROM pg_snapshot_xip(s))"),
    ]
    columns.extend(field_query(sources, name) for name in fields)
    return sql.SQL("SELECT {} FROM pg_current_snapshot() AS s").format(sql.SQL(", ").join(columns))


def field_query(sources: SourceMap, name: str) -> sql.Composed:
    """The expression that reads one field whole: distinct, sorted, NULL and blank dropped."""
    source = sources.sources[name]
    value = sql.SQL("{}::text").format(sql.Identifier(source.column))
    return sql.SQL(
        'ARRAY(SELECT DISTINCT {value} COLLATE "C" FROM {table} '
        "WHERE btrim({value}, {blank}) <> '' ORDER BY 1)"
    ).format(value=value, table=sql.Identifier(source.table), blank=sql.Literal(_BLANK))


class VocabularyLoader:
    """Loads vocabulary snapshots; keeps one lazily opened connection of its own for reuse."""

    def __init__(self, settings: Settings | None = None, *, purpose: str = "loader") -> None:
        self.settings = settings or get_settings()
        self.purpose = purpose
        self._conn: AsyncConn | None = None
        self._lock = asyncio.Lock()
        self.loads = 0

    def fields_for_table(self, table: str) -> tuple[str, ...]:
        """The fields a notification from ``table`` can have changed (empty when unknown)."""
        return self.settings.sources.fields_of(table)

    async def load(self, fields: Iterable[str] | None = None) -> Snapshot:
        """Load ``fields`` (default: all six) on the loader's own connection.

        The connection is kept between loads, so the server may have dropped it meanwhile
        (restart, failover, idle timeout, ``pg_terminate_backend``): then reconnect once.
        """
        names = None if fields is None else tuple(fields)
        async with self._lock:
            kept = self._conn
            if kept is not None and not kept.closed:
                try:
                    return await self.load_on(kept, names)
                except DatabaseUnavailableError as exc:
                    dropped = kept.closed  # else the query failed, not the connection
                    await self.close_connection()
                    if not dropped:
                        raise
                    logger.info(
                        "reconnecting: the kept connection was dropped (%s)",
                        exc,
                        extra={"action": "loader_reconnect"},
                    )
            self._conn = await connect(self.settings, self.purpose)
            try:
                return await self.load_on(self._conn, names)
            except DatabaseUnavailableError:
                await self.close_connection()
                raise

    async def load_on(self, conn: AsyncConn, fields: Iterable[str] | None = None) -> Snapshot:
        """Load ``fields`` on a connection the caller owns (the bridge uses its own)."""
        names = tuple(FIELDS if fields is None else fields)
        unknown = [name for name in names if name not in FIELDS]
        if unknown:
            raise ValueError(f"unknown vocabulary fields: {unknown}")
        query = build_query(self.settings.sources, names)
        try:
            cursor = await execute_with_deadline(conn, query, self.settings.query_timeout)
            row = await cursor.fetchone()
        except (pg_errors.UndefinedTable, pg_errors.UndefinedColumn) as exc:
            raise ConfigurationError(
                f"{describe_pg_error(self.settings, exc)} - check VOCABSYNC_SOURCES "
                f"({self._describe_sources(names)}) or run `vocabsync migrate`"
            ) from None
        except DatabaseUnavailableError as exc:
            raise DatabaseUnavailableError(
                f"vocabulary query on {self.settings.postgres_display}: {exc}"
            ) from None
        except psycopg.Error as exc:
            raise DatabaseUnavailableError(
                f"vocabulary query failed on {self.settings.postgres_display}: "
                f"{describe_pg_error(self.settings, exc)}"
            ) from None
        if row is None:  # pragma: no cover - SELECT without FROM filter always returns a row
            raise DatabaseUnavailableError("vocabulary query returned no row")
        self.loads += 1
        xmax, in_progress, *lists = row
        version = version_from_snapshot(int(xmax), int(in_progress))
        snapshot = Snapshot.from_lists(dict(zip(names, lists, strict=True)), version)
        logger.debug(
            "loaded vocabulary",
            extra={"action": "vocabulary_loaded", "version": version, "fields": names},
        )
        return snapshot

    def _describe_sources(self, names: Iterable[str]) -> str:
        return ", ".join(f"{name}={self.settings.sources.sources[name]}" for name in names)

    async def close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            await conn.close()

    async def __aenter__(self) -> VocabularyLoader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close_connection()
