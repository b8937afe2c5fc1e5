"""The probe of touched values: exact answers, index lookups, and races between real writers.

``Follower`` below is what a bridge does with delta notifications (a reference, not the bridge):
it starts from a full load, and for every batch of notifications it receives, parses them and
probes the touched values (or reloads fields) at one snapshot, then applies the answers. The
race tests drive concurrent transactions on separate connections, in the interleavings that
could make a value disappear or stick, and require the follower to end equal to a full load.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from psycopg import sql

from tests.test_migrations import Listener, make_settings
from vocabsync.config import Settings
from vocabsync.db.connection import AsyncConn
from vocabsync.db.migrate import migrate
from vocabsync.db.notifications import parse_notification
from vocabsync.errors import ConfigurationError, DatabaseUnavailableError
from vocabsync.services.change_probe import ProbeResult, build_probe, probe
from vocabsync.services.vocabulary_loader import VocabularyLoader
from vocabsync.vocabulary import FIELDS

NOTIFY_TIMEOUT = 10.0


@pytest.fixture
def delta(pg_url: str) -> Settings:
    """Settings for a fresh database migrated in delta mode (triggers and lookup indexes)."""
    settings = make_settings(pg_url, trigger_mode="delta")
    report = asyncio.run(migrate(settings))
    assert report.check.ok, report.check.problems
    return settings


@pytest.fixture
async def aconn(delta: Settings) -> AsyncIterator[AsyncConn]:
    conn = await psycopg.AsyncConnection.connect(delta.postgres_conninfo, autocommit=True)
    try:
        yield conn
    finally:
        await conn.close()


def execute(url: str, *statements: str | sql.Composable) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


async def full_state(settings: Settings) -> dict[str, set[str]]:
    async with VocabularyLoader(settings) as loader:
        snapshot = await loader.load()
    return {name: set(snapshot.get(name)) for name in FIELDS}


@dataclass
class Follower:
    """Keeps the vocabulary the way a bridge following delta notifications would."""

    settings: Settings
    state: dict[str, set[str]] = field(default_factory=dict)
    probes: list[ProbeResult] = field(default_factory=list)

    async def start(self, conn: AsyncConn) -> None:
        result = await probe(conn, self.settings, {}, FIELDS)
        self.state = {name: set(terms) for name, terms in result.full.items()}

    async def follow(self, conn: AsyncConn, payloads: Collection[str]) -> ProbeResult:
        """One probe for a batch of notifications, received before it started."""
        touched: dict[str, set[str]] = {}
        reload: set[str] = set()
        for payload in payloads:
            change = parse_notification(payload, self.settings.sources)
            if change is None:
                reload |= set(FIELDS)
                continue
            reload |= change.reload
            for name, values in change.touched.items():
                touched.setdefault(name, set()).update(values)
        result = await probe(conn, self.settings, touched, reload)
        for name, asked in touched.items():
            if name not in reload:
                self.state[name] = (self.state[name] - asked) | result.present[name]
        for name, terms in result.full.items():
            self.state[name] = set(terms)
        self.probes.append(result)
        return result


# --- Answers -------------------------------------------------------------------------------------


async def test_present_values_and_full_lists_at_one_snapshot(
    delta: Settings, aconn: AsyncConn
) -> None:
    url = delta.postgres_conninfo
    execute(
        url,
        """INSERT INTO "Project" (project_name, location) VALUES
           ('Alpha', 'Pasig'), (' Beta ', NULL), ('', 'Cebu'), ('alpha', E'\\t')""",
    )
    result = await probe(
        aconn,
        delta,
        {
            "projects": ["Alpha", "Beta", " Beta ", "ALPHA", "alpha", "gone", " ", ""],
            "project_locations": ["Pasig", "Makati"],
            "expense_files": ["nothing"],
            "cashflow_files": [],
        },
        ["project_locations", "expense_categories"],
    )
    assert result.present == {
        "projects": {"Alpha", " Beta ", "alpha"},  # exact text, untrimmed, case-sensitive
        "expense_files": frozenset(),
        "cashflow_files": frozenset(),
    }  # project_locations is reloaded, so not probed
    assert result.full == {"project_locations": ("Cebu", "Pasig"), "expense_categories": ()}
    async with VocabularyLoader(delta) as loader:
        loaded = await loader.load_state_on(aconn)
    assert loaded.state.identity == result.identity != ""
    assert (loaded.state.xmax, loaded.state.in_progress) == (result.xmax, result.in_progress)
    assert loaded.lists["project_locations"] == result.full["project_locations"]


async def test_one_round_trip(delta: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = await psycopg.AsyncConnection.connect(delta.postgres_conninfo, autocommit=True)
    statements: list[object] = []
    original = conn.execute

    async def counting(*args: Any, **kwargs: Any) -> Any:
        statements.append(args[0])
        return await original(*args, **kwargs)

    monkeypatch.setattr(conn, "execute", counting)
    try:
        await probe(conn, delta, {name: ["x"] for name in FIELDS[:3]}, FIELDS[3:])
    finally:
        await conn.close()
    assert len(statements) == 1


async def test_errors_are_the_loaders(delta: Settings, aconn: AsyncConn) -> None:
    with pytest.raises(ValueError, match="unknown vocabulary fields"):
        await probe(aconn, delta, {"nope": ["x"]}, [])
    wrong = make_settings(delta.postgres_conninfo, sources={"projects": "Nope.name"})
    with pytest.raises(ConfigurationError, match=r"VOCABSYNC_SOURCES.*projects=Nope\.name"):
        await probe(aconn, wrong, {"projects": ["x"]}, [])
    execute(delta.postgres_conninfo, "DROP FUNCTION public.vocabsync_database_identity()")
    with pytest.raises(ConfigurationError, match="vocabsync migrate"):
        await probe(aconn, delta, {"projects": ["x"]}, [])
    await aconn.close()
    with pytest.raises(DatabaseUnavailableError):
        await probe(aconn, delta, {"projects": ["x"]}, [])


def _plan_nodes(plan: Any) -> Iterator[dict[str, Any]]:
    if isinstance(plan, list):
        for item in plan:
            yield from _plan_nodes(item)
    elif isinstance(plan, dict):
        if "Node Type" in plan:
            yield plan
        for key in ("Plan", "Plans"):
            if key in plan:
                yield from _plan_nodes(plan[key])


async def rows_read(settings: Settings, values: list[str]) -> tuple[int, int, int]:
    """(sequential scans, rows they read, index scans) of "Project" for one probe, from the
    transaction's own statistics."""
    conn = await psycopg.AsyncConnection.connect(settings.postgres_conninfo)  # in a transaction
    try:
        await probe(conn, settings, {"projects": values}, [])
        cursor = await conn.execute(
            "SELECT seq_scan, seq_tup_read, idx_scan FROM pg_stat_xact_user_tables"
            " WHERE relname = 'Project'"
        )
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2] or 0)
    finally:
        await conn.close()


@pytest.mark.slow
async def test_lookups_use_the_index_whatever_the_table_size(delta: Settings) -> None:
    """Rows read per single-value probe are the same at 10,000 and 100,000 rows: none by a
    sequential scan, one index scan per value; and EXPLAIN shows no Seq Scan."""
    url = delta.postgres_conninfo
    measured = []
    for size in (10_000, 100_000):
        execute(
            url,
            'TRUNCATE "Project" CASCADE',
            sql.SQL(
                """INSERT INTO "Project" (project_name, location)
                   SELECT 'Project ' || g, 'Site ' || (g % 100) FROM generate_series(1, {}) g"""
            ).format(sql.Literal(size)),
            'ANALYZE "Project"',
        )
        measured.append(await rows_read(delta, ["Project 7"]))
        assert await rows_read(delta, ["Project 7", "Project 9", "nope"]) == (0, 0, 3)
        query = build_probe(delta, {"projects": ["Project 7", "x"]}, [])
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) {}").format(query)).fetchone()
        assert row is not None
        plan = row[0] if not isinstance(row[0], str) else json.loads(row[0])
        scans = {(n["Node Type"], n.get("Relation Name")) for n in _plan_nodes(plan)}
        assert ("Seq Scan", "Project") not in scans, scans
        assert any(t.startswith("Index") and r == "Project" for t, r in scans), scans
    assert measured == [(0, 0, 1), (0, 0, 1)]


# --- Races ---------------------------------------------------------------------------------------


class Writer:
    """A connection whose transaction the test opens and commits by hand."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)

    def begin(self, *statements: str) -> None:
        self.conn.execute("BEGIN")
        for statement in statements:
            self.conn.execute(statement)

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def writers(delta: Settings) -> Iterator[tuple[Writer, Writer, psycopg.Connection[Any]]]:
    """Two writers and an idle connection that sends the listener's sentinels."""
    a, b = Writer(delta.postgres_conninfo), Writer(delta.postgres_conninfo)
    ctl = psycopg.connect(delta.postgres_conninfo, autocommit=True)
    try:
        yield a, b, ctl
    finally:
        for conn in (a.conn, b.conn, ctl):
            conn.close()


@pytest.fixture
def listener(delta: Settings) -> Iterator[Listener]:
    listening = Listener(delta.postgres_conninfo)
    try:
        yield listening
    finally:
        listening.close()


CATEGORY = "expense_categories"


async def test_two_transactions_deleting_the_last_two_rows_of_a_value(
    delta: Settings,
    aconn: AsyncConn,
    writers: tuple[Writer, Writer, psycopg.Connection[Any]],
    listener: Listener,
) -> None:
    """Each deletes one row holding "Fuel", neither sees the other's delete: the probe after the
    first commit still finds B's row, the one after the second finds none."""
    a, b, ctl = writers
    execute(
        delta.postgres_conninfo,
        """INSERT INTO "ExpensesColumn" (id, column_name) VALUES (1, 'Fuel'), (2, 'Fuel'),
           (3, 'Tolls')""",
    )
    listener.drain(ctl)
    follower = Follower(delta)
    await follower.start(aconn)
    assert "Fuel" in follower.state[CATEGORY]

    a.begin("""DELETE FROM "ExpensesColumn" WHERE id = 1""")
    b.begin("""DELETE FROM "ExpensesColumn" WHERE id = 2""")
    a.commit()
    first = listener.drain(ctl)
    assert [json.loads(p)["c"] for p in first] == [{"column_name": ["Fuel"]}]
    result = await follower.follow(aconn, first)
    assert result.present[CATEGORY] == {"Fuel"}  # B's row, not yet deleted for anyone
    b.commit()
    result = await follower.follow(aconn, listener.drain(ctl))
    assert result.present[CATEGORY] == frozenset()
    assert "Fuel" not in follower.state[CATEGORY]
    assert follower.state == await full_state(delta)

    # Both commit before the bridge gets to it: one probe for both notifications.
    execute(
        delta.postgres_conninfo, """INSERT INTO "ExpensesColumn" VALUES (4, 'Oil'), (5, 'Oil')"""
    )
    await follower.follow(aconn, listener.drain(ctl))
    assert "Oil" in follower.state[CATEGORY]
    a.begin("""DELETE FROM "ExpensesColumn" WHERE id = 4""")
    b.begin("""DELETE FROM "ExpensesColumn" WHERE id = 5""")
    b.commit()
    a.commit()
    both = listener.drain(ctl)
    assert len(both) == 2
    await follower.follow(aconn, both)
    assert follower.state == await full_state(delta)
    assert "Oil" not in follower.state[CATEGORY]


@pytest.mark.parametrize("insert_commits_first", [True, False])
async def test_an_insert_racing_a_delete_of_the_same_value(
    delta: Settings,
    aconn: AsyncConn,
    writers: tuple[Writer, Writer, psycopg.Connection[Any]],
    listener: Listener,
    insert_commits_first: bool,
) -> None:
    """A inserts "Fuel" while B deletes the only other row holding it: whichever commits last,
    the probe that follows its notification finds A's row, so "Fuel" stays."""
    a, b, ctl = writers
    execute(delta.postgres_conninfo, """INSERT INTO "ExpensesColumn" VALUES (1, 'Fuel')""")
    listener.drain(ctl)
    follower = Follower(delta)
    await follower.start(aconn)

    a.begin("""INSERT INTO "ExpensesColumn" VALUES (2, 'Fuel')""")
    b.begin("""DELETE FROM "ExpensesColumn" WHERE id = 1""")
    first, second = (a, b) if insert_commits_first else (b, a)
    first.commit()
    result = await follower.follow(aconn, listener.drain(ctl))
    # Insert first: the old row is still there for everyone else. Delete first: A's row is not
    # committed, so "Fuel" is gone for now, and the state says so.
    assert result.present[CATEGORY] == ({"Fuel"} if insert_commits_first else frozenset())
    second.commit()
    result = await follower.follow(aconn, listener.drain(ctl))
    assert result.present[CATEGORY] == {"Fuel"}
    assert follower.state == await full_state(delta)
    assert "Fuel" in follower.state[CATEGORY]


async def test_a_rename_racing_an_insert_of_the_old_value(
    delta: Settings,
    aconn: AsyncConn,
    writers: tuple[Writer, Writer, psycopg.Connection[Any]],
    listener: Listener,
) -> None:
    """A renames the last "Fuel" to "Diesel" while B inserts another "Fuel"."""
    a, b, ctl = writers
    execute(delta.postgres_conninfo, """INSERT INTO "ExpensesColumn" VALUES (1, 'Fuel')""")
    listener.drain(ctl)
    follower = Follower(delta)
    await follower.start(aconn)
    a.begin("""UPDATE "ExpensesColumn" SET column_name = 'Diesel' WHERE id = 1""")
    b.begin("""INSERT INTO "ExpensesColumn" VALUES (2, 'Fuel')""")
    a.commit()
    await follower.follow(aconn, listener.drain(ctl))
    assert follower.state[CATEGORY] == {"Diesel"}
    b.commit()
    await follower.follow(aconn, listener.drain(ctl))
    assert follower.state[CATEGORY] == {"Diesel", "Fuel"} == (await full_state(delta))[CATEGORY]


_VALUES = ["Fuel", "Oil", "Tolls", " Fuel", "", None]


def run_writer(
    url: str, ops: list[tuple[str, str | None, str | None]], start: threading.Barrier
) -> None:
    """Random single-row and bulk writes on one connection, each its own transaction; errors
    from the races (none expected) propagate."""
    with psycopg.connect(url, autocommit=True) as conn:
        start.wait(timeout=10)
        for kind, value, other in ops:
            if kind == "insert":
                conn.execute('INSERT INTO "ExpensesColumn" (column_name) VALUES (%s)', (value,))
            elif kind == "delete":
                conn.execute(
                    'DELETE FROM "ExpensesColumn" WHERE column_name IS NOT DISTINCT FROM %s',
                    (value,),
                )
            elif kind == "rename":
                conn.execute(
                    'UPDATE "ExpensesColumn" SET column_name = %s'
                    " WHERE column_name IS NOT DISTINCT FROM %s",
                    (value, other),
                )
            else:
                with conn.transaction():
                    conn.execute(
                        'DELETE FROM "ExpensesColumn"'
                        ' WHERE id IN (SELECT min(id) FROM "ExpensesColumn")'
                    )
                    conn.execute('INSERT INTO "ExpensesColumn" (column_name) VALUES (%s)', (value,))


OPS = st.lists(
    st.tuples(
        st.sampled_from(["insert", "insert", "delete", "rename", "swap"]),
        st.sampled_from(_VALUES),
        st.sampled_from(_VALUES),
    ),
    min_size=1,
    max_size=8,
)


@pytest.mark.slow
@hsettings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(work=st.lists(OPS, min_size=2, max_size=3))
async def test_property_concurrent_writers_and_a_following_probe_converge(
    delta: Settings, work: list[list[tuple[str, str | None, str | None]]]
) -> None:
    """Feature: delta notifications, Property: while writers race on a few values, a follower
    that probes after each batch of notifications it receives ends equal to a full load."""
    execute(delta.postgres_conninfo, 'TRUNCATE "ExpensesColumn"')
    async with (
        await psycopg.AsyncConnection.connect(delta.postgres_conninfo, autocommit=True) as listen,
        await psycopg.AsyncConnection.connect(delta.postgres_conninfo, autocommit=True) as conn,
    ):
        await listen.execute("LISTEN vocabulary_changed")
        follower = Follower(delta)
        await follower.start(conn)
        start = threading.Barrier(len(work))
        writing = asyncio.gather(
            *(asyncio.to_thread(run_writer, delta.postgres_conninfo, ops, start) for ops in work)
        )
        while not writing.done():
            batch = [n.payload async for n in listen.notifies(timeout=0.05)]
            if batch:
                await follower.follow(conn, batch)
        await writing
        await conn.execute("SELECT pg_notify('vocabulary_changed', 'sentinel')")
        batch = []
        async for notify in listen.notifies(timeout=NOTIFY_TIMEOUT):
            if notify.payload == "sentinel":
                break
            batch.append(notify.payload)
        else:  # pragma: no cover - the sentinel always comes
            raise AssertionError("sentinel not received")
        await follower.follow(conn, batch)
    assert follower.state == await full_state(delta)
