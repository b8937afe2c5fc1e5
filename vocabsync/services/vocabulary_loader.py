"""VocabularyLoader: read the vocabulary from PostgreSQL in one round trip.

One SELECT returns every requested field (distinct, sorted, NULL and blank values dropped) and the
database state it was read at: the snapshot's xmax and number of transactions in progress (raw),
from which :func:`vocabsync.vocabulary.version_from_snapshot` makes an exact version, and the
database's identity (``public.vocabsync_database_identity()``: cluster, timeline, database,
generation), without which versions of two database histories could not be told apart. The probe
of touched values (:mod:`vocabsync.services.change_probe`) reads the same three in its one round
trip, so a full load and a probe are comparable. Table and column names come from the configured
:class:`~vocabsync.sources.SourceMap` and are quoted as identifiers, never pasted into SQL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import errors as pg_errors, sql

from vocabsync.config import Settings, get_settings
from vocabsync.db.connection import AsyncConn, connect, describe_pg_error, execute_with_deadline
from vocabsync.errors import ConfigurationError, DatabaseUnavailableError
from vocabsync.sources import FieldSource, SourceMap
from vocabsync.vocabulary import Snapshot, version_from_snapshot

logger = logging.getLogger(__name__)

BLANK: Final = " \t\r\n"
"""A value is a term when it is not NULL and not made only of these (``btrim``)."""

STATE_COLUMNS: Final = sql.SQL(
    "pg_catalog.pg_snapshot_xmax(s)::text::bigint, "
    "(SELECT count(*) FROM pg_catalog.pg_snapshot_xip(s)), "
    "public.vocabsync_database_identity()"
)
"""The database state a query reads at, for ``FROM pg_current_snapshot() AS s``: xmax, the
number of transactions in progress (uncapped), the identity."""


@dataclass(frozen=True, slots=True)
class DatabaseState:
    """Where a read happened: which database history, and when in it."""

    xmax: int
    in_progress: int
    """Transactions in progress at the snapshot, as counted (not capped)."""
    identity: str
    """Changes when the database's history does: another cluster or database, a new timeline
    (promotion, point-in-time recovery), a restored dump. Versions of different identities do
    not order."""

    @property
    def version(self) -> int:
        return version_from_snapshot(self.xmax, self.in_progress)


@dataclass(frozen=True, slots=True)
class LoadResult:
    """A full load of some fields, and the state it was read at."""

    lists: dict[str, tuple[str, ...]]
    state: DatabaseState
    fields: tuple[str, ...]
    """All configured fields (``lists`` may hold only some of them)."""

    def snapshot(self) -> Snapshot:
        return Snapshot.from_lists(
            self.lists, self.state.version, identity=self.state.identity, fields=self.fields
        )


def field_terms_sql(source: FieldSource) -> sql.Composed:
    """The field's terms: its column's distinct text, sorted byte-wise, blanks dropped."""
    value = sql.SQL("{}::text").format(sql.Identifier(source.column))
    return sql.SQL(
        'ARRAY(SELECT DISTINCT {value} COLLATE "C" FROM {table} '
        "WHERE pg_catalog.btrim({value}, {blank}) <> '' ORDER BY 1)"
    ).format(value=value, table=sql.Identifier(source.table), blank=sql.Literal(BLANK))


def build_query(sources: SourceMap, fields: Iterable[str]) -> sql.Composed:
    """The single SELECT that loads ``fields`` with the state it read them at (xmax, xip count,
    identity)."""
    columns: list[sql.Composable] = [STATE_COLUMNS]
    columns.extend(field_terms_sql(sources.sources[name]) for name in fields)
    return sql.SQL("SELECT {} FROM pg_catalog.pg_current_snapshot() AS s").format(
        sql.SQL(", ").join(columns)
    )


def state_of(row: Sequence[Any]) -> DatabaseState:
    """The state in the first three columns of a row read with :data:`STATE_COLUMNS`."""
    return DatabaseState(xmax=int(row[0]), in_progress=int(row[1]), identity=str(row[2] or ""))


async def fetch_one_row(
    conn: AsyncConn,
    settings: Settings,
    query: sql.Composed,
    *,
    what: str,
    sources_hint: str,
) -> tuple[Any, ...]:
    """Run a single-row vocabulary query with the settings' deadline; the loader's errors.

    ConfigurationError when a mapped table, column or the identity function does not exist;
    DatabaseUnavailableError for anything else the database or the link does.
    """
    try:
        cursor = await execute_with_deadline(conn, query, settings.query_timeout)
        row = await cursor.fetchone()
    except (pg_errors.UndefinedTable, pg_errors.UndefinedColumn) as exc:
        raise ConfigurationError(
            f"{describe_pg_error(settings, exc)} - check VOCABSYNC_SOURCES "
            f"({sources_hint}) or run `vocabsync migrate`"
        ) from None
    except pg_errors.UndefinedFunction as exc:
        raise ConfigurationError(
            f"{describe_pg_error(settings, exc)} - run `vocabsync migrate` (it installs "
            "public.vocabsync_database_identity())"
        ) from None
    except DatabaseUnavailableError as exc:
        raise DatabaseUnavailableError(f"{what} on {settings.postgres_display}: {exc}") from None
    except psycopg.Error as exc:
        raise DatabaseUnavailableError(
            f"{what} failed on {settings.postgres_display}: {describe_pg_error(settings, exc)}"
        ) from None
    if row is None:  # pragma: no cover - SELECT without FROM filter always returns a row
        raise DatabaseUnavailableError(f"{what} returned no row")
    return tuple(row)


def describe_sources(sources: SourceMap, names: Iterable[str]) -> str:
    return ", ".join(f"{name}={sources.sources[name]}" for name in names)


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
        return (await self.load_state_on(conn, fields)).snapshot()

    async def load_state_on(
        self, conn: AsyncConn, fields: Iterable[str] | None = None
    ) -> LoadResult:
        """Load ``fields`` with the raw state (xmax, in-progress count, identity) they were read
        at, on a connection the caller owns."""
        sources = self.settings.sources
        names = tuple(sources.fields if fields is None else fields)
        unknown = [name for name in names if name not in sources.sources]
        if unknown:
            raise ValueError(f"unknown vocabulary fields: {unknown}")
        row = await fetch_one_row(
            conn,
            self.settings,
            build_query(sources, names),
            what="vocabulary query",
            sources_hint=describe_sources(sources, names),
        )
        self.loads += 1
        state = state_of(row)
        lists = dict(zip(names, map(tuple, row[3:]), strict=True))
        result = LoadResult(lists, state, sources.fields)
        logger.debug(
            "loaded vocabulary",
            extra={"action": "vocabulary_loaded", "version": state.version, "fields": names},
        )
        return result

    async def close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            await conn.close()

    async def __aenter__(self) -> VocabularyLoader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close_connection()
