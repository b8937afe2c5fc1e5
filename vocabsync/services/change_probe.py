"""Which touched terms are still in the database, in one round trip at one snapshot.

A notification lists the terms a statement touched; whether each is still present is decided here,
after the commit, by index lookups (so concurrent writers cannot make a term stick or vanish: the
answer is read at a snapshot that includes every commit notified so far). Fields a statement
touched too much of are read whole.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import psycopg
from psycopg import errors as pg_errors, sql

from vocabsync.config import Settings
from vocabsync.db.connection import AsyncConn, describe_pg_error, execute_with_deadline
from vocabsync.errors import ConfigurationError, DatabaseUnavailableError
from vocabsync.services.vocabulary_loader import field_query

_BLANK = " \t\r\n"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    xmax: int
    in_progress: int
    identity: str
    present: dict[str, frozenset[str]]
    full: dict[str, tuple[str, ...]]


async def probe(
    conn: AsyncConn,
    settings: Settings,
    touched: Mapping[str, Collection[str]],
    reload: Collection[str],
) -> ProbeResult:
    touched_names = [name for name in touched if name not in reload]
    reload_names = list(reload)
    columns: list[sql.Composable] = [
        sql.SQL("pg_snapshot_xmax(s)::text::bigint"),
        sql.SQL("(SELECT count(*) FROM pg_snapshot_xip(s))"),
    ]
    params: list[object] = []
    for name in touched_names:
        source = settings.sources.sources[name]
        value = sql.SQL("t.{}::text").format(sql.Identifier(source.column))
        columns.append(
            sql.SQL(
                "ARRAY(SELECT v FROM unnest(%s::text[]) AS v WHERE btrim(v, {blank}) <> '' "
                "AND EXISTS (SELECT 1 FROM {table} AS t WHERE {value} = v))"
            ).format(blank=sql.Literal(_BLANK), table=sql.Identifier(source.table), value=value)
        )
        params.append(list(touched[name]))
    for name in reload_names:
        columns.append(field_query(settings.sources, name))
    query = sql.SQL("SELECT {} FROM pg_current_snapshot() AS s").format(sql.SQL(", ").join(columns))
    try:
        cursor = await execute_with_deadline(conn, query, settings.query_timeout, params)
        row = await cursor.fetchone()
    except (pg_errors.UndefinedTable, pg_errors.UndefinedColumn) as exc:
        raise ConfigurationError(
            f"{describe_pg_error(settings, exc)} - check VOCABSYNC_SOURCES or run "
            "`vocabsync migrate`"
        ) from None
    except psycopg.Error as exc:
        raise DatabaseUnavailableError(
            f"vocabulary probe failed on {settings.postgres_display}: "
            f"{describe_pg_error(settings, exc)}"
        ) from None
    assert row is not None
    xmax, in_progress, *values = row
    present = {name: frozenset(found) for name, found in zip(touched_names, values, strict=False)}
    full = {
        name: tuple(found)
        for name, found in zip(reload_names, values[len(touched_names) :], strict=True)
    }
    return ProbeResult(int(xmax), int(in_progress), "", present, full)
