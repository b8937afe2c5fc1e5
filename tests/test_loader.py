"""VocabularyLoader against a real database: one round trip, exact lists, versions, mapping."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from tests.fixtures_app import derive, execute, expected_vocabulary, replace_vocabulary
from vocabsync.config import Settings
from vocabsync.errors import ConfigurationError, DatabaseUnavailableError
from vocabsync.services.redis_client import redis_client
from vocabsync.services.redis_vocabulary import RedisVocabularyCache
from vocabsync.services.vocabulary_loader import VocabularyLoader
from vocabsync.services.vocabulary_log import VocabularyLog
from vocabsync.vocabulary import FIELDS, version_from_snapshot

text_values = st.one_of(
    st.none(),
    st.sampled_from(["", " ", "\t\n", "Marikina", "marikina", "Sto. Niño", "Ñ", "z", "A"]),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        max_size=15,
    ),
)


async def test_lists_are_distinct_sorted_without_null_or_blank(
    settings: Settings, db_url: str
) -> None:
    execute(
        db_url,
        """INSERT INTO "Project"(project_name, location) VALUES
           ('Beta', 'Pasig'), ('Alpha', NULL), ('Beta', '   '), (NULL, 'Cebu'), ('', 'Pasig'),
           ('alpha', E'\\t')""",
    )
    async with VocabularyLoader(settings) as loader:
        snapshot = await loader.load()
    assert snapshot.get("projects") == ("Alpha", "Beta", "alpha")
    assert snapshot.get("project_locations") == ("Cebu", "Pasig")
    assert snapshot.is_complete
    assert snapshot.version > 0


async def test_partial_load_of_the_fields_one_table_feeds(settings: Settings) -> None:
    async with VocabularyLoader(settings) as loader:
        assert loader.fields_for_table("Project") == ("projects", "project_locations")
        assert loader.fields_for_table("CashFlowColumn") == ("cashflow_categories",)
        assert loader.fields_for_table("Unknown") == ()
        execute(
            settings.postgres_conninfo, """INSERT INTO "Expenses"(file_name) VALUES ('e.pdf')"""
        )
        execute(settings.postgres_conninfo, """INSERT INTO "Project"(project_name) VALUES ('P')""")
        partial = await loader.load(loader.fields_for_table("Expenses"))
    assert partial.get("expense_files") == ("e.pdf",)
    assert partial.get("projects") == (), "only the fields asked for are read"


async def test_versions_grow_with_every_commit(settings: Settings, db_url: str) -> None:
    async with VocabularyLoader(settings) as loader:
        first = await loader.load()
        again = await loader.load()
        execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('X')""")
        after = await loader.load()
    assert again.version == first.version, "same database state, same version"
    assert after.version > first.version


async def test_custom_mapping_and_wrong_typed_columns(settings: Settings, db_url: str) -> None:
    execute(db_url, 'CREATE TABLE "Site" (id int, "Site Name" text, code integer)')
    execute(db_url, """INSERT INTO "Site" VALUES (1, 'North "Yard"', 42), (2, 'South', 7)""")
    custom = derive(
        settings, sources={"projects": "Site.Site Name", "project_locations": "Site.code"}
    )
    async with VocabularyLoader(custom) as loader:
        assert loader.fields_for_table("Site") == ("projects", "project_locations")
        snapshot = await loader.load()
    assert snapshot.get("projects") == ('North "Yard"', "South")
    assert snapshot.get("project_locations") == ("42", "7")


async def test_missing_table_says_which_setting_to_fix(settings: Settings) -> None:
    broken = derive(settings, sources={"projects": "Nope.name"})
    async with VocabularyLoader(broken) as loader:
        with pytest.raises(ConfigurationError, match=r"VOCABSYNC_SOURCES.*projects=Nope\.name"):
            await loader.load()


async def test_unreachable_database_error_hides_the_password(settings: Settings) -> None:
    broken = derive(settings, database_url="postgresql://app:hunter2-secret@127.0.0.1:1/db")
    async with VocabularyLoader(broken) as loader:
        with pytest.raises(DatabaseUnavailableError) as raised:
            await loader.load()
    assert "hunter2-secret" not in str(raised.value)
    assert "127.0.0.1" in str(raised.value)


async def test_one_round_trip_per_load(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    async with VocabularyLoader(settings) as loader:
        conn = await psycopg.AsyncConnection.connect(settings.postgres_conninfo, autocommit=True)
        statements: list[object] = []
        original = conn.execute

        async def counting(*args: Any, **kwargs: Any) -> Any:
            statements.append(args[0])
            return await original(*args, **kwargs)

        monkeypatch.setattr(conn, "execute", counting)
        try:
            snapshot = await loader.load_on(conn)
        finally:
            await conn.close()
    assert snapshot.is_complete
    assert len(statements) == 1, "all six fields and the version come from one statement"


@hsettings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(st.tuples(st.sampled_from(FIELDS), text_values), max_size=10))
async def test_cache_refresh_updates_all_vocabulary_data(
    settings: Settings,
    db_url: str,
    caplog: pytest.LogCaptureFixture,
    rows: list[tuple[str, str | None]],
) -> None:
    """Feature: real-time-vocabulary-sync, Property 3: Cache refresh updates all vocabulary data."""
    replace_vocabulary(db_url, settings, rows)
    cache = RedisVocabularyCache(settings)
    client = redis_client(settings)
    caplog.clear()
    try:
        with caplog.at_level(logging.INFO):
            await cache.refresh_cache("manual")
        found = await VocabularyLog(client, settings).read_full()
    finally:
        await cache.stop()
        await client.aclose()
    assert found is not None
    stored = found[1]
    assert set(stored.as_lists()) == set(FIELDS)
    assert stored.as_lists() == expected_vocabulary(db_url)
    counts = stored.counts()
    assert f"projects={counts['projects']}" in caplog.text
    assert f"cashflow_categories={counts['cashflow_categories']}" in caplog.text


async def test_a_load_carries_its_raw_state_and_the_database_identity(
    settings: Settings, db_url: str
) -> None:
    async with VocabularyLoader(settings) as loader:
        conn = await psycopg.AsyncConnection.connect(settings.postgres_conninfo, autocommit=True)
        try:
            first = await loader.load_state_on(conn, ["projects"])
            execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('X')""")
            second = await loader.load_state_on(conn, ["projects"])
        finally:
            await conn.close()
    assert first.state.identity == second.state.identity
    assert first.state.identity.count("/") == 4  # system id/timeline/database/function/generation
    assert second.state.xmax > first.state.xmax
    assert second.lists == {"projects": ("X",)}
    snapshot = second.snapshot()
    assert snapshot.version == version_from_snapshot(second.state.xmax, second.state.in_progress)
    assert snapshot.get("projects") == ("X",)
