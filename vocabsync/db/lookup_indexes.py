"""The indexes that let the bridge look up touched values instead of scanning tables.

A delta notification lists values; the bridge asks "is this value still a term?" with one
lookup per value (:mod:`vocabsync.services.change_probe`), ``t.c::text = $v``. Without an index
that is a scan of the table per value, which would make a single-row change cost as much as the
table is large. One B-tree per vocabulary column, on the column's text:

    CREATE INDEX CONCURRENTLY "<table>_<column>_vocabsync" ON "<table>" (("<column>"::text))

For a ``text`` column that is a plain index on the column (``c::text`` is ``c``), and an index
the table already has on the column (a unique constraint on the name, say) serves as well:
:func:`unindexed` asks the planner whether the probe's lookup can use *an* index, whichever.

Cost (README, "Write path"): each INSERT, and each UPDATE that changes the column, adds an
index entry; UPDATEs of other columns stay HOT (the index covers only the vocabulary column).
Size: about the column's text plus 16 bytes per row. ``vocabsync migrate`` builds them with
``CREATE INDEX CONCURRENTLY``: writes go on, but it scans the table twice and waits for every
transaction older than itself (a long-running one delays it). It cannot run in a transaction,
nor on a partitioned table, which gets a plain ``CREATE INDEX`` (writes to it wait meanwhile).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

from vocabsync.db.connection import AsyncConn
from vocabsync.db.quoting import MAX_IDENTIFIER_BYTES, quote_ident, quote_literal
from vocabsync.sources import SourceMap

logger = logging.getLogger(__name__)

INDEX_LOCK_KEY: Final = int.from_bytes(b"vsindexs", "big")
"""Session advisory lock held while building an index, so concurrent ``migrate`` runs build each
index once. Taken with ``pg_try_advisory_lock`` in a polling loop, never waited for inside a
statement: a session blocked on it would hold a snapshot, and ``CREATE INDEX CONCURRENTLY``
waits for every older snapshot (a deadlock)."""
LOCK_POLL_SECONDS: Final = 0.2
INDEX_LOCK_TIMEOUT_SECONDS: Final = 60.0
"""How long an index build may wait for the table's lock and for older transactions. A build
that gives up leaves an INVALID index, which the next ``migrate`` drops and builds again."""


@dataclass(frozen=True, slots=True)
class LookupIndex:
    """The index one vocabulary column needs (several fields may share a column)."""

    table: str
    column: str
    fields: tuple[str, ...]

    @property
    def name(self) -> str:
        """``<table>_<column>_vocabsync``; a longer one is cut and given a hash, so it stays
        unique and within PostgreSQL's 63 bytes."""
        name = f"{self.table}_{self.column}_vocabsync"
        if len(name.encode()) <= MAX_IDENTIFIER_BYTES:
            return name
        digest = hashlib.sha256(f"{self.table}\x00{self.column}".encode()).hexdigest()[:8]
        head = name.encode()[: MAX_IDENTIFIER_BYTES - len(digest) - 1].decode(errors="ignore")
        return f"{head}_{digest}"

    def describe(self) -> str:
        return f"{quote_ident(self.table)}.{quote_ident(self.column)} ({', '.join(self.fields)})"


def lookup_indexes(sources: SourceMap) -> list[LookupIndex]:
    """One per distinct (table, column) of ``sources``, in field order."""
    fields: dict[tuple[str, str], list[str]] = {}
    for name, source in sources.sources.items():
        fields.setdefault((source.table, source.column), []).append(name)
    return [LookupIndex(t, c, tuple(names)) for (t, c), names in fields.items()]


def lookup_condition(alias: str, column: str, value: str) -> str:
    """``alias.column`` holds the term ``value`` (an SQL expression of type text).

    The first comparison is the one an index on ``(column::text)`` serves, in the column's own
    collation; the second makes the match exact byte for byte (the loader's terms are compared
    under ``COLLATE "C"``), which only differs from the first under a nondeterministic collation.
    """
    text = f"{alias}.{quote_ident(column)}::text"
    return f'{text} = {value} AND ({text} COLLATE "C") = {value}'


def create_index_sql(index: LookupIndex, *, concurrently: bool = False) -> str:
    how = "CONCURRENTLY " if concurrently else ""
    return (
        f"CREATE INDEX {how}IF NOT EXISTS {quote_ident(index.name)}"
        f" ON {quote_ident(index.table)} (({quote_ident(index.column)}::text))"
    )


async def unindexed(conn: AsyncConn, indexes: Sequence[LookupIndex]) -> list[LookupIndex]:
    """The indexes whose lookup the planner cannot serve from any index of the table.

    Asks ``EXPLAIN`` for the probe's lookup with sequential scans discouraged: an index that
    serves it (ours, or the table's own) is then used, and a Seq Scan means there is none (or it
    is INVALID, as a failed concurrent build leaves it). One transaction, read-only.
    """
    missing: list[LookupIndex] = []
    async with conn.transaction():
        cursor = await conn.execute(
            "SELECT pg_catalog.current_setting('enable_seqscan'),"
            " pg_catalog.set_config('enable_seqscan', 'off', true)"
        )
        row = await cursor.fetchone()
        previous = str(row[0]) if row is not None else "on"
        for index in indexes:
            query = (
                f"EXPLAIN (FORMAT JSON) SELECT FROM {quote_ident(index.table)} AS t"
                f" WHERE {lookup_condition('t', index.column, quote_literal(''))}"
            )
            cursor = await conn.execute(query.encode())
            row = await cursor.fetchone()
            plan = row[0] if row is not None else None
            if isinstance(plan, str):
                plan = json.loads(plan)
            if not _uses_only_indexes(plan):
                missing.append(index)
        # Restored rather than left to the end of the transaction, which may be the caller's.
        await conn.execute("SELECT pg_catalog.set_config('enable_seqscan', %s, true)", (previous,))
    return missing


_TABLE_SCANS: Final = frozenset({"Seq Scan", "Sample Scan", "Foreign Scan", "Tid Range Scan"})
"""Plan nodes that read a table without an index (a Bitmap Heap Scan reads through one)."""


def _uses_only_indexes(plan: Any) -> bool:
    """``plan`` (EXPLAIN's JSON) reads the table only through indexes."""
    types = [str(node.get("Node Type", "")) for node in _nodes(plan)]
    return any("Index" in t for t in types) and not any(t in _TABLE_SCANS for t in types)


def _nodes(plan: Any) -> Iterable[dict[str, Any]]:
    if isinstance(plan, list):
        for item in plan:
            yield from _nodes(item)
    elif isinstance(plan, dict):
        if "Node Type" in plan:
            yield plan
        for key in ("Plan", "Plans"):
            if key in plan:
                yield from _nodes(plan[key])


async def build_indexes(conn: AsyncConn, indexes: Sequence[LookupIndex]) -> list[str]:
    """Build the lookup indexes that are still missing; return the names built.

    ``conn`` must be in autocommit mode (``CREATE INDEX CONCURRENTLY`` cannot run in a
    transaction). Each build holds :data:`INDEX_LOCK_KEY`, then checks again: another
    ``migrate`` may have built it meanwhile. An index of our name that does not serve the
    lookup (INVALID after a failed build, or defined otherwise) is dropped first.
    """
    built: list[str] = []
    for index in indexes:
        async with _index_lock(conn):
            if not await unindexed(conn, [index]):
                continue
            schema, kind = await _table_schema_and_kind(conn, index.table)
            concurrently = kind != "p"  # not supported on partitioned tables
            qualified = f"{quote_ident(schema)}.{quote_ident(index.name)}"
            how = "CONCURRENTLY " if concurrently else ""
            await conn.execute(
                "SELECT pg_catalog.set_config('lock_timeout', %s, false)",
                (f"{round(INDEX_LOCK_TIMEOUT_SECONDS * 1000)}ms",),
            )
            try:
                await conn.execute(f"DROP INDEX {how}IF EXISTS {qualified}".encode())
                logger.info(
                    "building index %s on %s%s",
                    index.name,
                    index.describe(),
                    " concurrently" if concurrently else " (partitioned table: not concurrently)",
                    extra={"action": "index_building", "index": index.name},
                )
                await conn.execute(create_index_sql(index, concurrently=concurrently).encode())
            finally:
                await conn.execute("RESET lock_timeout")
            built.append(index.name)
    return built


async def _table_schema_and_kind(conn: AsyncConn, table: str) -> tuple[str, str]:
    cursor = await conn.execute(
        "SELECT n.nspname::text, c.relkind::text FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = pg_catalog.to_regclass(%s)",
        (quote_ident(table),),
    )
    row = await cursor.fetchone()
    if row is None:  # pragma: no cover - the catalogue check runs first
        raise LookupError(f"table {quote_ident(table)} does not exist")
    return str(row[0]), str(row[1])


@asynccontextmanager
async def _index_lock(conn: AsyncConn) -> AsyncIterator[None]:
    while True:
        cursor = await conn.execute("SELECT pg_catalog.pg_try_advisory_lock(%s)", (INDEX_LOCK_KEY,))
        row = await cursor.fetchone()
        if row is not None and row[0]:
            break
        await asyncio.sleep(LOCK_POLL_SECONDS)
    try:
        yield
    finally:
        await conn.execute("SELECT pg_catalog.pg_advisory_unlock(%s)", (INDEX_LOCK_KEY,))
