"""The trigger's failure log: a notify that fails is counted per table, the write still commits,
and the bridge exports the count (vocabsync_trigger_failures), which the alert watches.

The notify is made to fail as in tests/test_migrations.py: the function is rendered for a channel
one byte over PostgreSQL's limit, so every pg_notify raises 'channel name too long'.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.test_migrations import (
    BASE,
    COLUMN,
    DELTA_TRIGGERS,
    LONG_CHANNEL,
    PRECISE_TRIGGERS,
    REPO,
    TRIGGERS,
    execute,
    make_settings,
    perform,
)
from tests.waiting import wait_until_async
from vocabsync.db.migrate import check, migrate
from vocabsync.db.triggers import (
    FAILURE_LOG_TABLE,
    TRIGGER_MODES,
    TriggerMode,
    function_body,
    render_trigger_sql,
)
from vocabsync.services.vocabulary_sync_bridge import VocabularySyncBridge
from vocabsync.sources import SourceMap

DEFAULTS = SourceMap.default()


def failure_counts(conn: psycopg.Connection[Any]) -> dict[str, tuple[int, str]]:
    """table -> (failures, last_error), read from the failure log."""
    rows = conn.execute(
        f"SELECT table_name, failures, last_error FROM {FAILURE_LOG_TABLE}"
        " WHERE last_failure_at IS NOT NULL"
    ).fetchall()
    return {row[0]: (int(row[1]), str(row[2])) for row in rows}


def gauge(text: str, name: str) -> float | None:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, flags=re.MULTILINE)
    return None if match is None else float(match.group(1))


@pytest.mark.parametrize("mode", TRIGGER_MODES)
async def test_failed_notifies_are_counted_per_table_and_writes_commit(
    pg_url: str, mode: TriggerMode
) -> None:
    await migrate(make_settings(pg_url, trigger_mode=mode))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert failure_counts(conn) == {}
        conn.execute(render_trigger_sql(DEFAULTS, LONG_CHANNEL, mode=mode))
        perform(conn, "Project", "INSERT", "kept", rows=2)
        perform(conn, "Project", "UPDATE", "changed")
        perform(conn, "Expenses", "INSERT", "fuel")
        with psycopg.connect(pg_url) as other:  # committed: another session sees them
            names = other.execute('SELECT project_name FROM "Project"').fetchall()
            expenses = other.execute(
                sql.SQL('SELECT {} FROM "Expenses"').format(sql.Identifier(COLUMN["Expenses"]))
            ).fetchall()
        assert names == [("changed",), ("changed",)]
        assert expenses == [("fuel",)]
        # One statement trigger for the INSERTs; the UPDATE fires once per statement or once
        # per changed row (precise and delta modes' row trigger, two rows).
        counts = failure_counts(conn)
        assert counts.keys() == {"Project", "Expenses"}
        assert counts["Project"][0] == (2 if mode == "statement" else 3)
        assert counts["Expenses"][0] == 1
        assert all("channel name too long" in error for _, error in counts.values())

        # A rolled-back write leaves no count: the log is written in the write's transaction.
        with conn.transaction(force_rollback=True):
            perform(conn, "Expenses", "INSERT", "undone")
        assert failure_counts(conn)["Expenses"][0] == 1


async def test_missing_failure_log_never_fails_the_write_and_migrate_recreates_it(
    pg_url: str,
) -> None:
    settings = make_settings(pg_url)
    await migrate(settings)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(render_trigger_sql(DEFAULTS, LONG_CHANNEL))
        conn.execute(f"DROP TABLE {FAILURE_LOG_TABLE}")
        perform(conn, "Project", "INSERT", "kept")
        assert conn.execute('SELECT count(*) FROM "Project"').fetchone() == (1,)

    result = await check(settings)
    assert f"table {FAILURE_LOG_TABLE} (where the function counts failed notifies) is missing" in (
        result.problems
    )
    report = await migrate(settings)
    assert report.repaired
    assert report.check.ok
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert failure_counts(conn) == {}


async def test_writer_without_privileges_is_not_counted_until_granted(pg_url: str) -> None:
    """The function runs as the writer (not SECURITY DEFINER): a role without privileges on the
    failure log still writes, uncounted; the documented GRANT makes its failures count."""
    role = f"writer_{uuid.uuid4().hex[:8]}"
    await migrate(make_settings(pg_url))
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(render_trigger_sql(DEFAULTS, LONG_CHANNEL))
        admin.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
        try:
            admin.execute(
                sql.SQL('GRANT SELECT, INSERT ON "Project" TO {}').format(sql.Identifier(role))
            )
            admin.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            perform(admin, "Project", "INSERT", "uncounted")
            admin.execute("RESET ROLE")
            assert failure_counts(admin) == {}
            assert admin.execute('SELECT count(*) FROM "Project"').fetchone() == (1,)

            admin.execute(
                sql.SQL("GRANT SELECT, INSERT, UPDATE ON {} TO {}").format(
                    sql.SQL(FAILURE_LOG_TABLE), sql.Identifier(role)
                )
            )
            admin.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            perform(admin, "Project", "INSERT", "counted")
            perform(admin, "Project", "INSERT", "counted again")  # the upsert's UPDATE branch
            admin.execute("RESET ROLE")
            assert failure_counts(admin)["Project"][0] == 2
        finally:
            admin.execute("RESET ROLE")
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


async def test_first_release_database_gets_the_failure_log(pg_url: str) -> None:
    """A database that ran the first two trigger files (so, precise mode) has the revision-1
    function and no failure log: check says so, and the third file (what `supabase db push`
    applies next) fixes both, as `vocabsync migrate` would; the fourth installs the default,
    delta mode."""
    migrations = [BASE, TRIGGERS, PRECISE_TRIGGERS]
    directory = REPO / "vocabsync" / "supabase" / "migrations"
    await execute(pg_url, *((directory / name).read_text(encoding="utf-8") for name in migrations))
    precise = make_settings(pg_url, trigger_mode="precise")
    result = await check(precise)
    assert not result.ok
    assert any("differs from the expected definition" in p for p in result.problems)
    assert any(FAILURE_LOG_TABLE in p for p in result.problems)
    assert function_body("vocabulary_changed", 1) != function_body("vocabulary_changed")

    third = directory / "20261128000300_vocabulary_trigger_failure_log.sql"
    await execute(pg_url, third.read_text(encoding="utf-8"))
    result = await check(precise)
    assert result.installed_mode == "precise"
    assert result.problems == [  # what the fourth file adds, in every mode
        "function public.vocabsync_database_identity() is missing"
    ]

    await execute(pg_url, (directory / DELTA_TRIGGERS).read_text(encoding="utf-8"))
    result = await check(make_settings(pg_url))  # the default mode
    assert (result.ok, result.installed_mode) == (True, "delta"), result.problems


async def test_bridge_exports_the_failure_count(db_url: str, bridge: VocabularySyncBridge) -> None:
    """The running bridge reads the log at each health check (every 0.5 s in the tests)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(render_trigger_sql(DEFAULTS, LONG_CHANNEL))
        perform(conn, "Project", "INSERT", "lost")
        perform(conn, "CashFlow", "INSERT", "lost too")
        assert sum(count for count, _ in failure_counts(conn).values()) == 2

    async def exported() -> float | None:
        value = gauge(bridge.metrics.render().decode(), "vocabsync_trigger_failures")
        return value if value == 2.0 else None

    assert await wait_until_async(exported, timeout=10.0, message="gauge never reached 2") == 2.0
