"""Which touched values are still terms: one round trip, one snapshot, index lookups.

A delta notification (:mod:`vocabsync.db.notifications`) lists the values a committed statement
touched, not what they mean now: a deleted value may still be held by another row, an inserted
one may already be gone again, and other transactions keep committing. So the bridge asks the
database, after the notification arrived, at one snapshot: for each touched field, which of its
values are present (a term: not NULL, not blank, compared as the column's text, untrimmed, as the
loader reads it); for each field to reload, the full sorted list; and the state it read all that
at (xmax, transactions in progress, identity), comparable with a full load's.

The notification is delivered only once its transaction has committed, so a snapshot taken after
it sees that transaction. Every transaction that touches a value sends a notification listing it
(or a reload of its field), so the probe that follows the last of them reads the value's final
presence, whatever the interleaving (tests/test_change_probe.py races concurrent writers).

Each value costs one index lookup (``LIMIT 1`` in a ``LATERAL`` subquery, so the planner cannot
turn the lookups into a scan of the table): the work is proportional to the values, not to the
table. The indexes are delta mode's (:mod:`vocabsync.db.lookup_indexes`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from psycopg import sql

from vocabsync.config import Settings
from vocabsync.db.connection import AsyncConn
from vocabsync.db.lookup_indexes import lookup_condition
from vocabsync.services.vocabulary_loader import (
    BLANK,
    STATE_COLUMNS,
    describe_sources,
    fetch_one_row,
    field_terms_sql,
    state_of,
)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What the database held at one snapshot, for the fields asked about."""

    xmax: int
    in_progress: int
    """Transactions in progress at the snapshot (uncapped)."""
    identity: str
    """The database's identity, as a full load reports it."""
    present: dict[str, frozenset[str]]
    """Per touched field, the asked-about values that are terms at the snapshot."""
    full: dict[str, tuple[str, ...]]
    """Per reloaded field, all its terms, sorted byte-wise (as a full load)."""


def present_sql(table: str, column: str, values: list[str]) -> sql.Composed:
    """Which of ``values`` ``table.column`` holds, one index lookup each.

    The values are literals, not parameters: a ``%`` in a quoted table or column name would
    read as a placeholder once parameters are passed.
    """
    return sql.SQL(
        "ARRAY(SELECT u.v FROM pg_catalog.unnest({values}::text[]) AS u(v)"
        " CROSS JOIN LATERAL (SELECT FROM {table} AS t WHERE {condition} LIMIT 1) AS hit)"
    ).format(
        values=sql.Literal(values),
        table=sql.Identifier(table),
        condition=sql.SQL(lookup_condition("t", column, "u.v")),  # quoted by lookup_condition
    )


def build_probe(
    settings: Settings, touched: Mapping[str, list[str]], reload: Collection[str]
) -> sql.Composed:
    """The probe's SELECT: the state, then one array per touched field (the values present),
    then one per reloaded field (all its terms)."""
    sources = settings.sources
    columns: list[sql.Composable] = [STATE_COLUMNS]
    for name, values in touched.items():
        source = sources.sources[name]
        columns.append(present_sql(source.table, source.column, values))
    columns.extend(field_terms_sql(sources.sources[name]) for name in reload)
    return sql.SQL("SELECT {} FROM pg_catalog.pg_current_snapshot() AS s").format(
        sql.SQL(", ").join(columns)
    )


async def probe(
    conn: AsyncConn,
    settings: Settings,
    touched: Mapping[str, Collection[str]],
    reload: Collection[str],
) -> ProbeResult:
    """Which of ``touched``'s values are terms now, and ``reload``'s fields in full, at one
    snapshot, in one round trip on ``conn`` (within ``settings.query_timeout``).

    A field in both is reloaded. Values that cannot be terms (blank) are answered without asking.
    Raises ConfigurationError when a mapped table or column, or the identity function, does not
    exist; DatabaseUnavailableError when the query fails or the link does; ValueError for an
    unknown field.
    """
    fields = settings.sources.fields
    unknown = sorted(set(touched) - set(fields) | set(reload) - set(fields))
    if unknown:
        raise ValueError(f"unknown vocabulary fields: {unknown}")
    reloads = [name for name in fields if name in set(reload)]
    lookups = {
        name: sorted({v for v in values if v.strip(BLANK)})
        for name, values in touched.items()
        if name not in reloads
    }
    asked = {name: values for name, values in lookups.items() if values}
    row = await fetch_one_row(
        conn,
        settings,
        build_probe(settings, asked, reloads),
        what="vocabulary probe",
        sources_hint=describe_sources(settings.sources, [*asked, *reloads]),
    )
    state = state_of(row)
    found, lists = row[3 : 3 + len(asked)], row[3 + len(asked) :]
    present = {name: frozenset[str]() for name in lookups}
    present.update({name: frozenset(values) for name, values in zip(asked, found, strict=True)})
    full = {name: tuple(values) for name, values in zip(reloads, lists, strict=True)}
    return ProbeResult(
        xmax=state.xmax,
        in_progress=state.in_progress,
        identity=state.identity,
        present=present,
        full=full,
    )
