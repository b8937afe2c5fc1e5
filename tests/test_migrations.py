"""Migrations and NOTIFY triggers, against a fresh private PostgreSQL database per test (pg_url).

Notifications are counted exactly without sleeping: after the write commits, the writer sends a
sentinel NOTIFY of its own; PostgreSQL delivers notifications in commit order, so everything the
write sent has arrived once the sentinel has (see Listener.drain).
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings as hyp_settings, strategies as st
from psycopg import sql

from app.config import Settings
from app.db.migrate import MIGRATIONS_DIR_ENV, check, migrate, migration_files
from app.db.triggers import (
    FUNCTION_SIGNATURE,
    TRIGGER_NAME,
    quote_ident,
    render_rollback_sql,
    render_trigger_sql,
)
from app.errors import ConfigurationError
from app.sources import FieldSource, SourceMap

REPO = Path(__file__).resolve().parent.parent
BASE = "20261128000000_vocabulary_base_schema.sql"
TRIGGERS = "20261128000100_vocabulary_sync_triggers.sql"
TRIGGER_FILE = REPO / "supabase" / "migrations" / TRIGGERS
ROLLBACK_FILE = REPO / "supabase" / "rollback" / "20261128000100_vocabulary_sync_triggers_down.sql"

CHANNEL = "vocabulary_changed"
LONG_CHANNEL = "c" * 64
"""One byte over PostgreSQL's limit: pg_notify raises 'channel name too long' on every call."""
NOTIFY_TIMEOUT = 10.0

DEFAULTS = SourceMap.default()
TABLES = DEFAULTS.tables
COLUMN = {table: DEFAULTS.columns_of(table)[0] for table in TABLES}
CASCADES: dict[str, frozenset[str]] = {
    "Project": frozenset({"Expenses", "CashFlow", "ExpensesColumn", "CashFlowColumn"}),
    "Expenses": frozenset({"ExpensesColumn"}),
    "CashFlow": frozenset({"CashFlowColumn"}),
    "ExpensesColumn": frozenset(),
    "CashFlowColumn": frozenset(),
}
"""Tables a DELETE (ON DELETE CASCADE) or TRUNCATE ... CASCADE on a table reaches; PostgreSQL runs
statements on them, so their statement triggers notify too."""

TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)
VALUES = st.one_of(st.sampled_from(["alpha", "beta"]), TEXT)
"""Mostly random text; a few repeated values so DELETE ... WHERE col = value often hits rows."""
WRITE_OPS = st.sampled_from(["INSERT", "UPDATE", "DELETE"])


def make_settings(url: str, **overrides: Any) -> Settings:
    """Settings for ``url``; a developer's .env file must not change what the tests check."""
    return Settings(database_url=url, _env_file=None, **overrides)


def all_migrations() -> list[str]:
    return [path.name for path in migration_files()]


# --- Helpers -------------------------------------------------------------------------------------


class Listener:
    """A second connection LISTENing on a channel."""

    _tokens = itertools.count()

    def __init__(self, url: str, channel: str = CHANNEL) -> None:
        self.channel = channel
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    def drain(self, writer: psycopg.Connection[Any]) -> list[str]:
        """Payloads of everything committed before now (``writer`` must be idle, autocommit)."""
        token = f"sentinel-{next(self._tokens)}"
        writer.execute("SELECT pg_notify(%s, %s)", (self.channel, token))
        payloads: list[str] = []
        for notify in self.conn.notifies(timeout=NOTIFY_TIMEOUT):
            if notify.payload == token:
                return payloads
            payloads.append(notify.payload)
        raise AssertionError(f"sentinel not received within {NOTIFY_TIMEOUT}s; got {payloads}")

    def close(self) -> None:
        self.conn.close()


def perform(
    conn: psycopg.Connection[Any],
    table: str,
    op: str,
    value: str = "x",
    rows: int = 1,
    column: str | None = None,
) -> None:
    """One statement of kind ``op`` on ``table`` touching its vocabulary column.

    Values are inlined as literals and no parameters are passed: with parameters psycopg would
    read a '%' inside a table name as a placeholder.
    """
    t = sql.Identifier(table)
    c = sql.Identifier(column or COLUMN[table])
    v = sql.Literal(value)
    if op == "INSERT":
        query = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM generate_series(1, {})")
        conn.execute(query.format(t, c, v, sql.Literal(rows)))
    elif op == "UPDATE":
        conn.execute(sql.SQL("UPDATE {} SET {} = {}").format(t, c, v))
    elif op == "DELETE":
        conn.execute(sql.SQL("DELETE FROM {} WHERE {} = {}").format(t, c, v))
    elif op == "TRUNCATE":
        conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(t))
    else:  # pragma: no cover - test bug
        raise AssertionError(op)


def assert_one_notification(payloads: list[str], table: str, op: str) -> None:
    """Exactly one notification named ``table``; a cascading statement may add its targets."""
    assert payloads.count(table) == 1, payloads
    assert len(payloads) == len(set(payloads)), payloads
    if op in ("DELETE", "TRUNCATE"):
        assert set(payloads) - {table} <= CASCADES.get(table, frozenset()), payloads
    else:
        assert payloads == [table]


async def execute(url: str, *statements: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for statement in statements:
            await conn.execute(statement)


async def fetch_all(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(query, params)
        return await cursor.fetchall()


async def tables_with_trigger(url: str) -> list[str]:
    rows = await fetch_all(
        url,
        "SELECT c.relname::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " WHERE t.tgname = %s AND t.tgfoid = to_regprocedure(%s)",
        (TRIGGER_NAME, FUNCTION_SIGNATURE),
    )
    return sorted(row[0] for row in rows)


async def catalog_state(url: str) -> list[tuple[Any, ...]]:
    """Row versions of the function, the triggers and the ledger: any rewrite changes them."""
    return await fetch_all(
        url,
        "SELECT 'proc', oid::text, xmin::text FROM pg_proc WHERE oid = to_regprocedure(%s)"
        " UNION ALL SELECT 'trigger', oid::text, xmin::text FROM pg_trigger WHERE tgname = %s"
        " UNION ALL SELECT 'ledger', name, xmin::text || applied_at::text"
        "   FROM public.vocabsync_migrations"
        " ORDER BY 1, 2",
        (FUNCTION_SIGNATURE, TRIGGER_NAME),
    )


# --- Fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def migrated_url(pg_url: str) -> str:
    """A fresh database with the default schema and triggers (migrated once per test)."""
    asyncio.run(migrate(make_settings(pg_url)))
    return pg_url


@pytest.fixture
def writer(migrated_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def listener(migrated_url: str) -> Iterator[Listener]:
    listening = Listener(migrated_url)
    try:
        yield listening
    finally:
        listening.close()


@pytest.fixture
def failing_writer(migrated_url: str) -> Iterator[tuple[psycopg.Connection[Any], list[str]]]:
    """A writer on a database whose trigger function notifies a channel that is too long.

    Yields the connection and the WARNING messages it has received so far.
    """
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(render_trigger_sql(DEFAULTS, LONG_CHANNEL))
        warnings: list[str] = []

        def on_notice(diag: psycopg.errors.Diagnostic) -> None:
            if diag.severity_nonlocalized == "WARNING":
                warnings.append(diag.message_primary or "")

        conn.add_notice_handler(on_notice)
        yield conn, warnings


# --- Rendering (no database) ---------------------------------------------------------------------


def test_committed_trigger_migration_equals_rendering() -> None:
    """The file `supabase db push` applies is exactly what `vocabsync migrate` applies."""
    assert TRIGGER_FILE.read_bytes().decode("utf-8") == render_trigger_sql(DEFAULTS, CHANNEL)


def test_committed_rollback_equals_rendering() -> None:
    assert ROLLBACK_FILE.read_bytes().decode("utf-8") == render_rollback_sql(DEFAULTS)
    assert not (REPO / "supabase" / "migrations" / ROLLBACK_FILE.name).exists()


def test_quote_ident_doubles_double_quotes_and_refuses_what_postgres_would_mangle() -> None:
    assert quote_ident("Project") == '"Project"'
    assert quote_ident('We"ird "Table"') == '"We""ird ""Table"""'
    assert quote_ident("é") == '"é"'
    for bad in ("", "a\x00b", "x" * 64, "é" * 32):
        with pytest.raises(ValueError, match="identifier"):
            quote_ident(bad)
    assert quote_ident("x" * 63) == f'"{"x" * 63}"'


def test_render_quotes_tables_and_channel() -> None:
    sources = SourceMap({**DEFAULTS.sources, "projects": FieldSource('Odd "T"', "name")})
    rendered = render_trigger_sql(sources, "it's $function$ here")
    assert 'ON "Odd ""T"""\n' in rendered
    assert "pg_notify('it''s $function$ here', TG_TABLE_NAME)" in rendered
    assert "AS $function1$\n" in rendered  # a dollar tag the body does not contain
    statements = render_trigger_sql(sources, CHANNEL).count("\nCREATE OR REPLACE TRIGGER ")
    assert statements == 6  # "Odd ""T""" and the five defaults


def test_unknown_trigger_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown trigger mode"):
        render_trigger_sql(DEFAULTS, CHANNEL, mode="changed_columns")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown trigger mode"):
        render_rollback_sql(DEFAULTS, mode="row")  # type: ignore[arg-type]


async def test_missing_migrations_directory_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MIGRATIONS_DIR_ENV, str(tmp_path / "nowhere"))
    settings = make_settings("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(ConfigurationError, match=MIGRATIONS_DIR_ENV):
        await migrate(settings)
    monkeypatch.setenv(MIGRATIONS_DIR_ENV, str(tmp_path))  # exists, but holds no *.sql
    with pytest.raises(ConfigurationError, match=r"no \*\.sql migrations"):
        await migrate(settings)


# --- migrate / check -----------------------------------------------------------------------------


async def test_migrate_creates_tables_function_and_triggers(pg_url: str) -> None:
    settings = make_settings(pg_url)
    report = await migrate(settings)
    assert BASE in report.applied
    assert TRIGGERS in report.applied
    assert report.applied == all_migrations()
    assert report.already_applied == []
    assert report.skipped == []
    assert not report.repaired
    assert report.check.ok
    assert report.check.problems == []

    rows = await fetch_all(
        pg_url,
        "SELECT to_regclass(quote_ident(t)) IS NOT NULL FROM unnest(%s::text[]) AS t",
        (list(TABLES),),
    )
    assert rows == [(True,)] * 5
    assert await tables_with_trigger(pg_url) == sorted(TABLES)
    result = await check(settings)
    assert result.ok
    assert result.problems == []
    assert result.missing_tables == []


async def test_second_migrate_applies_nothing_and_changes_nothing(pg_url: str) -> None:
    settings = make_settings(pg_url)
    await migrate(settings)
    before = await catalog_state(pg_url)
    report = await migrate(settings)
    assert report.applied == []
    assert report.already_applied == all_migrations()
    assert BASE in report.already_applied
    assert TRIGGERS in report.already_applied
    assert not report.repaired
    assert report.check.ok
    assert await catalog_state(pg_url) == before


async def test_concurrent_migrations_apply_each_migration_once(pg_url: str) -> None:
    settings = make_settings(pg_url)
    first, second = await asyncio.gather(migrate(settings), migrate(settings))
    assert sorted(first.applied + second.applied) == all_migrations()
    assert sorted(first.already_applied + second.already_applied) == all_migrations()
    rows = await fetch_all(pg_url, "SELECT name FROM public.vocabsync_migrations ORDER BY name")
    assert [row[0] for row in rows] == all_migrations()
    assert first.check.ok
    assert second.check.ok
    assert await tables_with_trigger(pg_url) == sorted(TABLES)


async def test_migrations_directory_from_environment(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (BASE, TRIGGERS):
        shutil.copy(REPO / "supabase" / "migrations" / name, tmp_path / name)
    monkeypatch.setenv(MIGRATIONS_DIR_ENV, str(tmp_path))
    report = await migrate(make_settings(pg_url))
    assert report.applied == [BASE, TRIGGERS]
    assert report.check.ok


async def test_dropped_trigger_is_reported_and_migrate_reinstalls_it(pg_url: str) -> None:
    settings = make_settings(pg_url)
    await migrate(settings)
    await execute(pg_url, 'DROP TRIGGER vocabulary_change_trigger ON "Expenses"')

    result = await check(settings)
    assert not result.ok
    assert result.problems == ['trigger vocabulary_change_trigger on "Expenses" is missing']

    report = await migrate(settings)
    assert report.repaired
    assert report.applied == []
    assert report.check.ok
    assert await tables_with_trigger(pg_url) == sorted(TABLES)


OTHER_FUNCTION = (
    "CREATE FUNCTION public.other_trigger_fn() RETURNS trigger LANGUAGE plpgsql"
    " AS $$ BEGIN RETURN NULL; END $$"
)


@pytest.mark.parametrize(
    ("statements", "expected"),
    [
        pytest.param(
            [
                "CREATE OR REPLACE TRIGGER vocabulary_change_trigger BEFORE INSERT OR UPDATE"
                ' OR DELETE OR TRUNCATE ON "CashFlow" FOR EACH STATEMENT'
                " EXECUTE FUNCTION public.notify_vocabulary_change()"
            ],
            ['trigger vocabulary_change_trigger on "CashFlow" fires BEFORE instead of AFTER'],
            id="before",
        ),
        pytest.param(
            [
                "CREATE OR REPLACE TRIGGER vocabulary_change_trigger AFTER INSERT OR UPDATE"
                ' OR DELETE ON "CashFlow" FOR EACH ROW'
                " EXECUTE FUNCTION public.notify_vocabulary_change()"
            ],
            [
                'trigger vocabulary_change_trigger on "CashFlow" is FOR EACH ROW instead of'
                " FOR EACH STATEMENT",
                'trigger vocabulary_change_trigger on "CashFlow" misses TRUNCATE',
            ],
            id="row",
        ),
        pytest.param(
            [
                "CREATE OR REPLACE TRIGGER vocabulary_change_trigger AFTER INSERT OR UPDATE"
                ' OR DELETE ON "CashFlow" FOR EACH STATEMENT'
                " EXECUTE FUNCTION public.notify_vocabulary_change()"
            ],
            ['trigger vocabulary_change_trigger on "CashFlow" misses TRUNCATE'],
            id="no-truncate",
        ),
        pytest.param(
            ['ALTER TABLE "CashFlow" DISABLE TRIGGER vocabulary_change_trigger'],
            ['trigger vocabulary_change_trigger on "CashFlow" is disabled'],
            id="disabled",
        ),
        pytest.param(
            [
                OTHER_FUNCTION,
                "CREATE OR REPLACE TRIGGER vocabulary_change_trigger AFTER INSERT OR UPDATE"
                ' OR DELETE OR TRUNCATE ON "CashFlow" FOR EACH STATEMENT'
                " EXECUTE FUNCTION public.other_trigger_fn()",
            ],
            [
                'trigger vocabulary_change_trigger on "CashFlow" calls another function'
                " (other_trigger_fn()) instead of public.notify_vocabulary_change()"
            ],
            id="other-function",
        ),
        pytest.param(
            [
                "CREATE OR REPLACE TRIGGER vocabulary_change_trigger AFTER INSERT OR UPDATE"
                ' OR DELETE OR TRUNCATE ON "CashFlow" FOR EACH STATEMENT WHEN (false)'
                " EXECUTE FUNCTION public.notify_vocabulary_change()"
            ],
            ['trigger vocabulary_change_trigger on "CashFlow" has a WHEN condition'],
            id="when",
        ),
    ],
)
async def test_altered_trigger_is_reported_and_repaired(
    pg_url: str, statements: list[str], expected: list[str]
) -> None:
    settings = make_settings(pg_url)
    await migrate(settings)
    await execute(pg_url, *statements)

    result = await check(settings)
    assert not result.ok
    assert result.problems == expected

    report = await migrate(settings)
    assert report.repaired
    assert report.check.ok
    assert (await check(settings)).ok


async def test_function_for_another_channel_is_reported_and_repaired(pg_url: str) -> None:
    await migrate(make_settings(pg_url))
    other = make_settings(pg_url, pg_channel="vocab_other")
    result = await check(other)
    assert not result.ok
    assert len(result.problems) == 1
    assert "differs from the expected definition for channel 'vocab_other'" in result.problems[0]

    report = await migrate(other)
    assert report.repaired
    assert report.check.ok
    assert not (await check(make_settings(pg_url))).ok  # now the default channel is the odd one


async def test_rollback_removes_everything_and_migrate_reinstalls(pg_url: str) -> None:
    settings = make_settings(pg_url)
    await migrate(settings)
    await execute(pg_url, ROLLBACK_FILE.read_text(encoding="utf-8"))

    assert await tables_with_trigger(pg_url) == []
    assert await fetch_all(pg_url, "SELECT to_regprocedure(%s)::text", (FUNCTION_SIGNATURE,)) == [
        (None,)
    ]
    result = await check(settings)
    assert not result.ok
    assert result.problems == [f"function {FUNCTION_SIGNATURE} is missing"] + [
        f"trigger vocabulary_change_trigger on {quote_ident(table)} is missing" for table in TABLES
    ]

    report = await migrate(settings)
    assert report.repaired
    assert report.check.ok
    assert await tables_with_trigger(pg_url) == sorted(TABLES)


async def test_rollback_works_where_tables_are_missing(pg_url: str) -> None:
    await execute(pg_url, render_rollback_sql(DEFAULTS))
    assert await fetch_all(pg_url, "SELECT to_regprocedure(%s)::text", (FUNCTION_SIGNATURE,)) == [
        (None,)
    ]


CUSTOM_SOURCES = {
    "projects": "Proj.title",
    "project_locations": "Proj.place",
    "expense_files": "Files.expense",
    "cashflow_files": "Files.cashflow",
    "expense_categories": "Categories.expense",
    "cashflow_categories": "Categories.cashflow",
}


async def test_custom_mapping_gets_its_triggers_and_no_default_tables(pg_url: str) -> None:
    await execute(
        pg_url,
        'CREATE TABLE "Proj" (id serial PRIMARY KEY, title text, place text)',
        'CREATE TABLE "Files" (expense text, cashflow text)',
        'CREATE TABLE "Categories" (expense text, cashflow text)',
    )
    settings = make_settings(pg_url, sources=CUSTOM_SOURCES)
    report = await migrate(settings)
    assert report.skipped == [BASE]
    assert BASE not in report.applied
    assert TRIGGERS in report.applied
    assert report.check.ok
    assert await tables_with_trigger(pg_url) == ["Categories", "Files", "Proj"]
    assert await fetch_all(pg_url, "SELECT to_regclass('\"Project\"')::text") == [(None,)]

    with psycopg.connect(pg_url, autocommit=True) as conn:
        listening = Listener(pg_url)
        try:
            perform(conn, "Proj", "INSERT", "Hanapin", rows=3, column="title")
            assert listening.drain(conn) == ["Proj"]
            perform(conn, "Categories", "UPDATE", "Fuel", column="expense")
            assert listening.drain(conn) == ["Categories"]
        finally:
            listening.close()

    again = await migrate(settings)
    assert again.already_applied == all_migrations()
    assert not again.repaired


async def test_missing_tables_and_columns_are_configuration_errors(pg_url: str) -> None:
    await execute(pg_url, 'CREATE TABLE "Proj" (id serial PRIMARY KEY, title text, place text)')
    partial = make_settings(
        pg_url, sources={"projects": "Proj.title", "project_locations": "Proj.place"}
    )
    with pytest.raises(ConfigurationError, match="VOCABSYNC_SOURCES") as caught:
        await migrate(partial)
    assert '"Expenses"' in str(caught.value)

    result = await check(partial)
    assert not result.ok
    assert result.missing_tables == ["Expenses", "CashFlow", "ExpensesColumn", "CashFlowColumn"]
    assert result.configuration_problems[0] == (
        'table "Expenses" (vocabulary fields: expense_files) does not exist: '
        "fix VOCABSYNC_SOURCES or create the table"
    )
    assert set(result.configuration_problems) <= set(result.problems)

    typo = make_settings(pg_url, sources={**CUSTOM_SOURCES, "projects": "Proj.titel"})
    await execute(
        pg_url,
        'CREATE TABLE "Files" (expense text, cashflow text)',
        'CREATE TABLE "Categories" (expense text, cashflow text)',
    )
    with pytest.raises(ConfigurationError, match=r'column "Proj"\."titel"'):
        await migrate(typo)

    await execute(pg_url, 'CREATE VIEW "ProjView" AS SELECT title FROM "Proj"')
    view = make_settings(pg_url, sources={**CUSTOM_SOURCES, "projects": "ProjView.title"})
    result = await check(view)
    assert result.configuration_problems == [
        '"ProjView" is a view, not a table, so its changes cannot be followed: point '
        "VOCABSYNC_SOURCES at the table it reads from"
    ]
    with pytest.raises(ConfigurationError, match="is a view"):
        await migrate(view)


async def test_identifiers_and_channel_with_quotes_are_quoted(pg_url: str) -> None:
    table = 'Odd "Table" é'
    channel = 'it\'s a "chan" $function$'
    column = 'ti"tle'
    await execute(
        pg_url, f"CREATE TABLE {quote_ident(table)} ({quote_ident(column)} text, other text)"
    )
    sources = {name: f"{table}.other" for name in CUSTOM_SOURCES}
    sources["projects"] = f"{table}.{column}"
    settings = make_settings(pg_url, sources=sources, pg_channel=channel)
    report = await migrate(settings)
    assert report.check.ok
    assert await tables_with_trigger(pg_url) == [table]

    with psycopg.connect(pg_url, autocommit=True) as conn:
        listening = Listener(pg_url, channel)
        try:
            perform(conn, table, "INSERT", "v", column=column)
            assert listening.drain(conn) == [table]
        finally:
            listening.close()


# --- Notifications -------------------------------------------------------------------------------


@pytest.mark.parametrize("table", TABLES)
def test_each_operation_notifies_once_per_statement(
    table: str, writer: psycopg.Connection[Any], listener: Listener
) -> None:
    perform(writer, table, "INSERT", "a", rows=3)  # one multi-row statement: one notification
    assert listener.drain(writer) == [table]
    perform(writer, table, "UPDATE", "b")  # updates all three rows
    assert listener.drain(writer) == [table]
    perform(writer, table, "DELETE", "b")
    assert_one_notification(listener.drain(writer), table, "DELETE")
    perform(writer, table, "INSERT", "c", rows=2)
    assert listener.drain(writer) == [table]
    perform(writer, table, "TRUNCATE")
    assert sorted(listener.drain(writer)) == sorted({table} | CASCADES[table])

    with pytest.raises(RuntimeError), writer.transaction():  # noqa: PT012
        perform(writer, table, "INSERT", "rolled back")
        raise RuntimeError
    assert listener.drain(writer) == []


def test_update_of_zero_rows_still_notifies(
    writer: psycopg.Connection[Any], listener: Listener
) -> None:
    """Statement triggers fire per statement, whether or not a row matched."""
    perform(writer, "ExpensesColumn", "UPDATE", "nothing to update")
    assert listener.drain(writer) == ["ExpensesColumn"]


def test_failing_notify_never_fails_the_write(
    failing_writer: tuple[psycopg.Connection[Any], list[str]], migrated_url: str
) -> None:
    conn, warnings = failing_writer
    listening = Listener(migrated_url)
    steps = [
        ("INSERT", "kept", ["kept", "kept"]),
        ("UPDATE", "changed", ["changed", "changed"]),
        ("DELETE", "changed", []),
        ("INSERT", "again", ["again"]),
        ("TRUNCATE", "", []),
    ]
    try:
        for op, value, expected in steps:
            warnings.clear()
            perform(conn, "Project", op, value, rows=len(expected) or 1)
            with psycopg.connect(migrated_url) as other:  # another session sees the commit
                rows = other.execute('SELECT project_name FROM "Project"').fetchall()
            assert [row[0] for row in rows] == expected, op
            assert any(
                w.startswith("vocabsync: failed to notify vocabulary change on Project:")
                and "channel name too long" in w
                for w in warnings
            ), (op, warnings)
            assert listening.drain(conn) == []  # nothing reached the real channel
    finally:
        listening.close()


# --- Properties ----------------------------------------------------------------------------------


@hyp_settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(table=st.sampled_from(TABLES), op=WRITE_OPS, value=VALUES, rows=st.integers(1, 4))
def test_property_triggers_publish_for_all_operations(
    writer: psycopg.Connection[Any],
    listener: Listener,
    table: str,
    op: str,
    value: str,
    rows: int,
) -> None:
    """Feature: real-time-vocabulary-sync, Property 1: Database triggers publish notifications for all operations"""  # noqa: E501
    perform(writer, table, op, value, rows=rows)
    assert_one_notification(listener.drain(writer), table, op)


TABLE_NAMES = st.text(
    st.characters(codec="utf-8", exclude_characters="\x00."), min_size=1, max_size=15
).filter(lambda name: name not in (*TABLES, "vocabsync_migrations"))
"""Arbitrary table names (no '.': the mapping splits "Table.column" at the first one)."""


@hyp_settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    table=st.one_of(st.sampled_from(TABLES), TABLE_NAMES),
    op=WRITE_OPS,
    value=VALUES,
)
def test_property_trigger_payload_is_the_table_name(
    writer: psycopg.Connection[Any], listener: Listener, table: str, op: str, value: str
) -> None:
    """Feature: real-time-vocabulary-sync, Property 8: Trigger function includes table name in payload"""  # noqa: E501
    column = COLUMN.get(table)
    if column is None:  # an arbitrary name: create it and map a vocabulary field to it
        column = "term"
        writer.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (term text)").format(sql.Identifier(table))
        )
        sources = SourceMap({**DEFAULTS.sources, "projects": FieldSource(table, column)})
        writer.execute(render_trigger_sql(sources, CHANNEL))
        listener.drain(writer)  # DDL sends nothing, but start from a clean slate anyway
    perform(writer, table, op, value, column=column)
    payloads = listener.drain(writer)
    assert_one_notification(payloads, table, op)


@hyp_settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    table=st.sampled_from(TABLES),
    op=st.sampled_from(["INSERT", "UPDATE", "DELETE", "TRUNCATE"]),
    value=VALUES,
)
def test_property_failing_trigger_never_fails_the_write(
    failing_writer: tuple[psycopg.Connection[Any], list[str]],
    table: str,
    op: str,
    value: str,
) -> None:
    """Feature: real-time-vocabulary-sync, Property 9: Trigger function handles errors gracefully"""
    conn, warnings = failing_writer
    warnings.clear()
    t, c = sql.Identifier(table), sql.Identifier(COLUMN[table])

    def counts() -> tuple[int, int]:
        """(rows holding ``value``, all rows)."""
        query = sql.SQL("SELECT count(*) FILTER (WHERE {} = %s), count(*) FROM {}").format(c, t)
        row = conn.execute(query, (value,)).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    matching_before, total_before = counts()
    perform(conn, table, op, value)
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # committed

    expected = {
        "INSERT": (matching_before + 1, total_before + 1),
        "UPDATE": (total_before, total_before),
        "DELETE": (0, total_before - matching_before),
        "TRUNCATE": (0, 0),
    }[op]
    assert counts() == expected
    assert any(
        w.startswith(f"vocabsync: failed to notify vocabulary change on {table}:") for w in warnings
    ), warnings
