"""Delta mode's payloads, against a fresh private PostgreSQL database per test.

Every write is checked against what the database says it touched: the listed values of a column
are exactly the distinct non-blank old and new texts of the rows the statement inserted, deleted
or changed in that column, or the column is reloaded. Notifications are counted exactly with the
sentinel of tests/test_migrations.py (Listener.drain): they arrive in commit order.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from psycopg import sql

from tests.test_migrations import LONG_CHANNEL, Listener, make_settings
from vocabsync.db.migrate import check, migrate
from vocabsync.db.notifications import parse_notification
from vocabsync.db.triggers import (
    FAILURE_LOG_TABLE,
    MAX_DELTAS_PER_TRANSACTION,
    MAX_PAYLOAD_BYTES,
    render_trigger_sql,
)
from vocabsync.sources import SourceMap

DEFAULTS = SourceMap.default()
TABLES = DEFAULTS.tables
BLANK = " \t\r\n"

Change = dict[str, Any]
"""A payload as {"t": table, "c": {column: set of values}, "r": set of columns}."""


def decode(payload: str) -> Change:
    data = json.loads(payload)
    assert set(data) <= {"t", "c", "r"}, data
    listed = data.get("c", {})
    for values in listed.values():
        assert len(values) == len(set(values)), f"a value listed twice: {values}"
    return {
        "t": data["t"],
        "c": {column: set(values) for column, values in listed.items()},
        "r": set(data.get("r", [])),
    }


def merged(payloads: list[str], table: str) -> tuple[dict[str, set[str]], set[str]]:
    """``table``'s listed values per column and reloaded columns, over ``payloads``."""
    listed: dict[str, set[str]] = {}
    reload: set[str] = set()
    for payload in payloads:
        change = decode(payload)
        if change["t"] != table:
            continue
        for column, values in change["c"].items():
            listed.setdefault(column, set()).update(values)
        reload |= change["r"]
    return listed, reload


@pytest.fixture
def delta_url(pg_url: str) -> str:
    report = asyncio.run(migrate(make_settings(pg_url, trigger_mode="delta")))
    assert (report.check.ok, report.check.installed_mode) == (True, "delta"), report.check
    return pg_url


@pytest.fixture
def writer(delta_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(delta_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def listener(delta_url: str) -> Iterator[Listener]:
    listening = Listener(delta_url)
    try:
        yield listening
    finally:
        listening.close()


def rows_of(conn: psycopg.Connection[Any], table: str) -> dict[int, tuple[str | None, ...]]:
    """id -> the text of each vocabulary column."""
    columns = sql.SQL(", ").join(
        sql.SQL("{}::text").format(sql.Identifier(c)) for c in DEFAULTS.columns_of(table)
    )
    query = sql.SQL("SELECT id, {} FROM {}").format(columns, sql.Identifier(table))
    return {row[0]: tuple(row[1:]) for row in conn.execute(query).fetchall()}


def touched(
    table: str, before: dict[int, tuple[str | None, ...]], after: dict[int, tuple[str | None, ...]]
) -> dict[str, set[str]]:
    """Per column, the non-blank values of inserted and deleted rows, and the old and new values
    of rows whose text changed in that column: what a delta notification must list."""
    found: dict[str, set[str]] = {}
    for n, column in enumerate(DEFAULTS.columns_of(table)):
        values: set[str | None] = set()
        for key in before.keys() | after.keys():
            old = before[key][n] if key in before else None
            new = after[key][n] if key in after else None
            if old != new:
                values |= {old, new}
        terms = {v for v in values if v is not None and v.strip(BLANK)}
        if terms:
            found[column] = terms
    return found


def assert_describes(payloads: list[str], table: str, expected: dict[str, set[str]]) -> None:
    """The payloads list exactly the expected values, or reload the column."""
    listed, reload = merged(payloads, table)
    for column in DEFAULTS.columns_of(table):
        if column in reload:
            continue
        assert listed.get(column, set()) == expected.get(column, set()), (column, payloads)


def write(
    conn: psycopg.Connection[Any], listener: Listener, table: str, statement: sql.Composable
) -> tuple[list[str], dict[str, set[str]]]:
    """Run ``statement`` on ``table``; its payloads and what it touched."""
    before = rows_of(conn, table)
    conn.execute(statement)
    payloads = listener.drain(conn)
    return payloads, touched(table, before, rows_of(conn, table))


# --- Payloads ------------------------------------------------------------------------------------


def test_insert_update_delete_truncate(writer: psycopg.Connection[Any], listener: Listener) -> None:
    writer.execute(
        """INSERT INTO "Project" (project_name, location) VALUES
           ('Alpha', 'Pasig'), ('Beta', 'Pasig'), ('  ', NULL), (NULL, E'\\t')"""
    )
    assert [decode(p) for p in listener.drain(writer)] == [
        {
            "t": "Project",
            "c": {"project_name": {"Alpha", "Beta"}, "location": {"Pasig"}},
            "r": set(),
        }
    ]
    writer.execute("""UPDATE "Project" SET budget = 1, updated_at = now()""")
    writer.execute("""UPDATE "Project" SET project_name = project_name, location = location""")
    assert listener.drain(writer) == []
    writer.execute("""UPDATE "Project" SET location = 'Cebu' WHERE project_name = 'Alpha'""")
    assert [decode(p) for p in listener.drain(writer)] == [
        {"t": "Project", "c": {"location": {"Pasig", "Cebu"}}, "r": set()}
    ]
    writer.execute("""UPDATE "Project" SET project_name = ' Beta ' WHERE project_name = 'Beta'""")
    assert [decode(p) for p in listener.drain(writer)] == [
        {"t": "Project", "c": {"project_name": {"Beta", " Beta "}}, "r": set()}  # untrimmed
    ]
    writer.execute("""DELETE FROM "Project" WHERE project_name = ' Beta '""")
    assert [decode(p) for p in listener.drain(writer)] == [
        {"t": "Project", "c": {"project_name": {" Beta "}, "location": {"Pasig"}}, "r": set()}
    ]
    writer.execute("""DELETE FROM "Project" WHERE false""")
    writer.execute("""DELETE FROM "Project" WHERE project_name IS NULL""")  # blank only
    writer.execute("""INSERT INTO "Project" (project_name) VALUES (NULL), ('')""")
    assert listener.drain(writer) == []
    writer.execute('TRUNCATE "ExpensesColumn"')
    assert [decode(p) for p in listener.drain(writer)] == [
        {"t": "ExpensesColumn", "c": {}, "r": {"column_name"}}
    ]
    with writer.transaction(force_rollback=True):
        writer.execute("""INSERT INTO "Project" (project_name) VALUES ('rolled back')""")
        writer.execute("""UPDATE "Project" SET location = 'rolled back too'""")
    assert listener.drain(writer) == []


def test_payloads_parse_into_fields(writer: psycopg.Connection[Any], listener: Listener) -> None:
    writer.execute("""INSERT INTO "Project" (project_name, location) VALUES ('P', 'L')""")
    (payload,) = listener.drain(writer)
    change = parse_notification(payload, DEFAULTS)
    assert change is not None
    assert change.touched == {"projects": {"P"}, "project_locations": {"L"}}
    assert change.reload == frozenset()


def test_cascades_and_upserts(writer: psycopg.Connection[Any], listener: Listener) -> None:
    writer.execute("""INSERT INTO "Project" (id, project_name) VALUES (1, 'P1'), (2, 'P2')""")
    writer.execute(
        """INSERT INTO "Expenses" (file_name, project_id)
           SELECT 'file ' || g, 1 + g % 2 FROM generate_series(1, 6) g"""
    )
    listener.drain(writer)
    writer.execute("""DELETE FROM "Project" WHERE id = 1""")  # cascades to three expenses
    payloads = listener.drain(writer)
    assert merged(payloads, "Project") == ({"project_name": {"P1"}}, set())
    assert merged(payloads, "Expenses") == ({"file_name": {"file 2", "file 4", "file 6"}}, set())
    assert len(payloads) == 2  # one per table: the cascade is one statement's transition table

    writer.execute('CREATE UNIQUE INDEX ON "ExpensesColumn" (id)')
    writer.execute("""INSERT INTO "ExpensesColumn" (id, column_name) VALUES (1, 'Fuel')""")
    listener.drain(writer)
    writer.execute(
        """INSERT INTO "ExpensesColumn" (id, column_name) VALUES (1, 'Diesel'), (2, 'Tolls')
           ON CONFLICT (id) DO UPDATE SET column_name = excluded.column_name"""
    )
    payloads = listener.drain(writer)
    assert merged(payloads, "ExpensesColumn") == (
        {"column_name": {"Fuel", "Diesel", "Tolls"}},
        set(),
    )


# --- Bulk statements and limits ------------------------------------------------------------------


def test_bulk_insert_and_delete_send_one_notification(
    writer: psycopg.Connection[Any], listener: Listener
) -> None:
    statement = sql.SQL(
        """INSERT INTO "ExpensesColumn" (column_name)
           SELECT 'Category ' || (g % 5) FROM generate_series(1, 5000) g"""
    )
    payloads, expected = write(writer, listener, "ExpensesColumn", statement)
    assert len(payloads) == 1
    assert merged(payloads, "ExpensesColumn") == (expected, set())
    assert len(expected["column_name"]) == 5

    statement = sql.SQL(
        """INSERT INTO "ExpensesColumn" (column_name)
           SELECT 'Imported ' || g FROM generate_series(1, 5000) g"""
    )
    payloads, _ = write(writer, listener, "ExpensesColumn", statement)
    assert [decode(p) for p in payloads] == [
        {"t": "ExpensesColumn", "c": {}, "r": {"column_name"}}  # too many to list
    ]
    payloads, _ = write(writer, listener, "ExpensesColumn", sql.SQL('DELETE FROM "ExpensesColumn"'))
    assert [decode(p) for p in payloads] == [{"t": "ExpensesColumn", "c": {}, "r": {"column_name"}}]


def test_bulk_update_lists_each_value_once_then_reloads(
    writer: psycopg.Connection[Any], listener: Listener
) -> None:
    writer.execute(
        """INSERT INTO "Project" (project_name, location)
           SELECT 'Project ' || g, 'Site ' || (g % 50) FROM generate_series(1, 5000) g"""
    )
    listener.drain(writer)
    statement = sql.SQL("""UPDATE "Project" SET location = 'Renamed site'""")
    payloads, expected = write(writer, listener, "Project", statement)
    # One notification per row that brings a value not listed before: the 50 old names.
    assert len(payloads) == 50
    assert merged(payloads, "Project") == (expected, set())
    assert len(expected["location"]) == 51

    statement = sql.SQL("""UPDATE "Project" SET project_name = 'Renamed ' || id""")
    payloads, _ = write(writer, listener, "Project", statement)
    assert len(payloads) == MAX_DELTAS_PER_TRANSACTION + 1  # then one reload, sent once
    assert decode(payloads[-1]) == {"t": "Project", "c": {}, "r": {"project_name"}}
    assert all("location" not in decode(p)["c"] for p in payloads)


def test_long_values_are_reloaded_and_payloads_stay_under_the_limit(
    writer: psycopg.Connection[Any], listener: Listener
) -> None:
    long = "é" * 5_000  # 10,000 bytes
    writer.execute(
        """INSERT INTO "Project" (project_name, location) VALUES (%s, 'Pasig')""", (long,)
    )
    assert [decode(p) for p in listener.drain(writer)] == [
        {"t": "Project", "c": {"location": {"Pasig"}}, "r": {"project_name"}}
    ]
    writer.execute("""UPDATE "Project" SET location = %s""", (long,))
    assert [decode(p) for p in listener.drain(writer)] == [
        {"t": "Project", "c": {}, "r": {"location"}}
    ]
    half = "x" * (MAX_PAYLOAD_BYTES // 2)  # each column fits, both do not: the longer goes
    writer.execute(
        """INSERT INTO "Project" (project_name, location) VALUES (%s, %s)""",
        (half, half + "y" * 10),
    )
    (payload,) = listener.drain(writer)
    assert len(payload.encode()) <= MAX_PAYLOAD_BYTES
    assert decode(payload) == {"t": "Project", "c": {"project_name": {half}}, "r": {"location"}}


def test_a_transaction_lists_at_most_so_many_notifications_per_table(
    writer: psycopg.Connection[Any], listener: Listener
) -> None:
    with writer.transaction():
        for n in range(MAX_DELTAS_PER_TRANSACTION + 20):
            writer.execute("""INSERT INTO "CashFlow" (file_name) VALUES (%s)""", (f"file {n}",))
        writer.execute("""INSERT INTO "ExpensesColumn" (column_name) VALUES ('other table')""")
    payloads = listener.drain(writer)
    cashflow = [decode(p) for p in payloads if decode(p)["t"] == "CashFlow"]
    assert len(cashflow) == MAX_DELTAS_PER_TRANSACTION + 1
    assert cashflow[-1] == {"t": "CashFlow", "c": {}, "r": {"file_name"}}
    assert merged(payloads, "ExpensesColumn") == ({"column_name": {"other table"}}, set())


def test_each_value_once_per_transaction_and_savepoints_forget_theirs(
    writer: psycopg.Connection[Any], listener: Listener
) -> None:
    writer.execute("""INSERT INTO "CashFlowColumn" (column_name) VALUES ('A'), ('B')""")
    listener.drain(writer)
    with writer.transaction():
        writer.execute("""UPDATE "CashFlowColumn" SET column_name = 'C' WHERE column_name = 'A'""")
        writer.execute("""UPDATE "CashFlowColumn" SET column_name = 'A' WHERE column_name = 'C'""")
        with writer.transaction(force_rollback=True):
            writer.execute(
                """UPDATE "CashFlowColumn" SET column_name = 'D' WHERE column_name = 'B'"""
            )
        writer.execute("""UPDATE "CashFlowColumn" SET column_name = 'D' WHERE column_name = 'B'""")
    assert merged(listener.drain(writer), "CashFlowColumn") == (
        {"column_name": {"A", "B", "C", "D"}},
        set(),
    )


def test_a_failure_commits_the_write_and_asks_for_a_reload(
    writer: psycopg.Connection[Any], listener: Listener
) -> None:
    """A broken transaction-local counter makes the function fail after it read the values: the
    write commits, the failure is counted, and the bare table name still tells the bridge."""
    warnings: list[str] = []
    writer.add_notice_handler(lambda d: warnings.append(d.message_primary or ""))
    with writer.transaction():
        writer.execute("SELECT set_config('vocabsync.delta_0_n', 'not a number', true)")
        writer.execute("""INSERT INTO "Project" (project_name) VALUES ('kept')""")
    assert listener.drain(writer) == ["Project"]
    assert any(
        w.startswith("vocabsync: failed to notify vocabulary change on Project") for w in warnings
    )
    assert writer.execute(f"SELECT failures FROM {FAILURE_LOG_TABLE}").fetchall() == [(1,)]
    assert writer.execute("""SELECT count(*) FROM "Project" """).fetchone() == (1,)

    # A notify that cannot be sent at all (channel name too long): the write still commits.
    writer.execute(render_trigger_sql(DEFAULTS, LONG_CHANNEL, mode="delta"))
    writer.execute("""UPDATE "Project" SET project_name = 'changed'""")
    assert listener.drain(writer) == []
    assert writer.execute("""SELECT project_name FROM "Project" """).fetchall() == [("changed",)]


async def test_check_and_migrate_know_delta_mode(delta_url: str) -> None:
    settings = make_settings(delta_url, trigger_mode="delta")
    assert (await check(settings)).ok
    assert (await check(make_settings(delta_url))).ok  # the default mode
    precise = await check(make_settings(delta_url, trigger_mode="precise"))
    assert precise.installed_mode == "delta"
    assert not precise.ok


# --- Property ------------------------------------------------------------------------------------

_VALUES = st.one_of(
    st.sampled_from(["alpha", "beta", "gamma", "", " ", "\t", " alpha", None, None]),
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12),
)


@st.composite
def statements(draw: st.DrawFn) -> tuple[str, sql.Composable]:
    table = draw(st.sampled_from([*TABLES, "Project", "Project"]))
    columns = DEFAULTS.columns_of(table)
    column = draw(st.sampled_from(columns))
    t, c = sql.Identifier(table), sql.Identifier(column)
    value, other = sql.Literal(draw(_VALUES)), sql.Literal(draw(_VALUES))
    rows = sql.Literal(draw(st.integers(1, 4)))
    kind = draw(st.sampled_from(["insert", "insert2", "rename", "rename_all", "delete", "swap"]))
    if kind == "insert":
        return table, sql.SQL("INSERT INTO {} ({}) SELECT {} FROM generate_series(1, {})").format(
            t, c, value, rows
        )
    if kind == "insert2":  # every vocabulary column, two values
        cols = sql.SQL(", ").join(sql.Identifier(x) for x in columns)
        vals = sql.SQL(", ").join([value, other][: len(columns)])
        return table, sql.SQL("INSERT INTO {} ({}) VALUES ({}), ({})").format(
            t, cols, vals, sql.SQL(", ").join([other, value][: len(columns)])
        )
    if kind == "rename":
        return table, sql.SQL("UPDATE {} SET {} = {} WHERE {} IS NOT DISTINCT FROM {}").format(
            t, c, value, c, other
        )
    if kind == "rename_all":
        return table, sql.SQL("UPDATE {} SET {} = {}").format(t, c, value)
    if kind == "swap":  # old and new values of several rows at once
        return table, sql.SQL("UPDATE {} SET {} = {} || id::text").format(t, c, value)
    return table, sql.SQL("DELETE FROM {} WHERE {} IS NOT DISTINCT FROM {}").format(t, c, value)


@hsettings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(work=st.lists(statements(), min_size=1, max_size=4))
def test_property_payloads_list_exactly_what_was_touched(
    writer: psycopg.Connection[Any], listener: Listener, work: list[tuple[str, sql.Composable]]
) -> None:
    """Feature: delta notifications, Property: for any statement, the notifications list, per
    column, exactly the distinct non-blank values it inserted, deleted or changed (old and new),
    or reload the column; each payload is under the limit and parses into fields."""
    for table, statement in work:
        payloads, expected = write(writer, listener, table, statement)
        assert all(len(p.encode()) <= MAX_PAYLOAD_BYTES for p in payloads)
        assert all(parse_notification(p, DEFAULTS) is not None for p in payloads)
        assert all(decode(p)["t"] == table for p in payloads)
        assert_describes(payloads, table, expected)
        if not expected:
            assert payloads == [], statement
