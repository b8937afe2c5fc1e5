"""Fields are configuration: VOCABSYNC_SOURCES adds a field, and everything follows it.

End to end: a seventh field ("suppliers", from a table the test creates) given only by
configuration is installed by ``vocabsync migrate``, served and matched by two ``vocabsync serve``
instances fed by a real bridge, and shown in the OpenAPI schema, /metrics and ``vocabsync
status``. Unit tests: the configuration's errors, and that the six stay exactly as they were.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis.asyncio as aioredis

from tests.fixtures_app import FAST_ENV, execute, make_settings, run_cli
from tests.waiting import wait_until
from vocabsync.config import Settings
from vocabsync.embed import VocabSync
from vocabsync.local.processes import ManagedProcess, cli_argv, wait_http_ready
from vocabsync.local.servers import LocalRedis, find_free_port
from vocabsync.main import create_app
from vocabsync.services.log_follower import catch_up
from vocabsync.services.log_writer import LogWriter
from vocabsync.services.vocabulary_log import LogEntry, VocabularyLog
from vocabsync.services.vocabulary_state import VocabularyState
from vocabsync.sources import DEFAULT_SOURCES, FieldSource, SourceMap
from vocabsync.vocabulary import FIELDS, Delta, FieldDelta, Snapshot, SnapshotFormatError

SUPPLIERS = '{"suppliers": "Supplier.supplier_name"}'
SEVEN = (*FIELDS, "suppliers")


def settings_with(sources: str) -> Settings:
    return Settings(_env_file=None, sources=sources)  # type: ignore[call-arg]


# --- configuration ----------------------------------------------------------------------------


def test_the_six_are_the_default_in_the_design_documents_order() -> None:
    sources = Settings(_env_file=None).sources  # type: ignore[call-arg]
    assert sources.fields == FIELDS
    assert sources.is_default
    assert sources.defaults_unchanged
    assert sources.added == ()
    assert dict(sources.sources) == dict(DEFAULT_SOURCES)


def test_an_added_field_comes_after_the_six_and_remaps_keep_their_place() -> None:
    sources = settings_with(
        '{"zeta": "Z.z", "projects": "Proyecto.nombre", "suppliers": "Supplier.supplier_name"}'
    ).sources
    assert sources.fields == (*FIELDS, "zeta", "suppliers")
    assert sources.added == ("zeta", "suppliers")
    assert sources.sources["suppliers"] == FieldSource("Supplier", "supplier_name")
    assert sources.sources["projects"] == FieldSource("Proyecto", "nombre")
    assert sources.tables[-2:] == ("Z", "Supplier")
    assert not sources.is_default
    assert not sources.defaults_unchanged
    added_only = settings_with(SUPPLIERS).sources
    assert added_only.defaults_unchanged
    assert not added_only.is_default


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ('{"Suppliers": "Supplier.name"}', "field name 'Suppliers' is not allowed"),
        ('{"2nd": "Supplier.name"}', "field name '2nd' is not allowed"),
        ('{"sup-pliers": "Supplier.name"}', "is not allowed"),
        ('{"' + "s" * 64 + '": "Supplier.name"}', "at most 63 characters"),
        ('{"meta": "Supplier.name"}', "'meta' is reserved"),
        ('{"suppliers": "A.b", "suppliers": "C.d"}', r"\['suppliers'\] more than once"),
        ('{"suppliers": "Supplier"}', "expected 'Table.column'"),
        ('{"suppliers": ".name"}', "expected 'Table.column'"),
        ('{"suppliers": "Supplier."}', "expected 'Table.column'"),
        ('["suppliers"]', "must be a JSON object"),
        ("suppliers=Supplier.name", "is not JSON"),
    ],
)
def test_bad_fields_are_refused_with_a_message_naming_the_setting(bad: str, says: str) -> None:
    with pytest.raises(ValueError, match="VOCABSYNC_SOURCES") as caught:
        settings_with(bad)
    assert caught.match(says)


def test_the_six_cannot_be_left_out_of_a_source_map() -> None:
    partial = {name: source for name, source in DEFAULT_SOURCES.items() if name != "projects"}
    with pytest.raises(ValueError, match=r"must include the fields \['projects'\]"):
        SourceMap(partial)


def test_the_router_of_an_app_reads_only_the_sources_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An app includes the router at import: its fields come from VOCABSYNC_SOURCES (or .env)
    alone, never from the whole settings (which may not be valid yet)."""
    monkeypatch.chdir(tmp_path)
    explicit = VocabSync.from_settings(settings_with(SUPPLIERS))
    monkeypatch.setenv("VOCABSYNC_NETWORK_TIMEOUT", "not-a-number")
    monkeypatch.delenv("VOCABSYNC_SOURCES", raising=False)
    assert VocabSync.from_settings().fields == FIELDS
    (tmp_path / ".env").write_text(f"VOCABSYNC_SOURCES='{SUPPLIERS}'\n")
    assert VocabSync.from_settings().fields == SEVEN
    monkeypatch.setenv("VOCABSYNC_SOURCES", '{"zeta": "Z.z"}')
    assert VocabSync.from_settings().fields == (*FIELDS, "zeta")
    assert explicit.fields == SEVEN


# --- the snapshot carries its fields ----------------------------------------------------------


def test_default_snapshot_json_is_unchanged_and_a_seventh_field_follows_the_six() -> None:
    six = Snapshot.from_lists({"projects": ["B", "A"]}, version=3, refreshed_at=1.0)
    assert six.fields == FIELDS
    assert list(json.loads(six.to_json())) == ["meta", *FIELDS]
    seven = Snapshot.from_lists({"suppliers": ["Acme"]}, version=3, refreshed_at=1.0, fields=SEVEN)
    document = json.loads(seven.to_json())
    assert list(document) == ["meta", *SEVEN]
    assert document["suppliers"] == ["Acme"]
    assert document["meta"]["field_versions"] == dict.fromkeys(SEVEN, 3)
    assert Snapshot.from_json(seven.to_json(), SEVEN).same_terms(seven)
    assert Snapshot.from_json(seven.to_json()).fields == FIELDS  # extra lists are left out
    with pytest.raises(SnapshotFormatError, match=r"'suppliers'.*VOCABSYNC_SOURCES"):
        Snapshot.from_json(six.to_json(), SEVEN)
    with pytest.raises(ValueError, match="unknown vocabulary fields"):
        Snapshot.from_lists({"suppliers": ["Acme"]}, version=3)


def test_a_delta_of_an_unconfigured_field_is_left_out_and_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = VocabularyState()
    state.adopt(Snapshot.from_lists({}, version=1, identity="db"), "1-0", "redis")
    delta = Delta.from_json(
        Delta({"projects": FieldDelta(("Alpha",)), "suppliers": FieldDelta(("Acme",))}).to_json()
    )
    with caplog.at_level(logging.WARNING):
        for n in (2, 3):
            entry = LogEntry(f"{n}-0", f"{n - 1}-0", "delta", n, "db", 0.0, delta)
            assert state.apply(entry)
    assert state.snapshot.fields == FIELDS
    assert list(state.snapshot["projects"]) == ["Alpha"]
    assert state.foreign_fields == ("suppliers",)
    warnings = [r for r in caplog.records if "suppliers" in r.getMessage()]
    assert len(warnings) == 1
    assert "VOCABSYNC_SOURCES" in warnings[0].getMessage()


async def test_an_instance_configured_otherwise_than_the_bridge_says_so_once(
    redis_server: LocalRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """The head names the writer's fields: a six-field instance following a seven-field bridge
    serves its six (the log's seventh is left out) and warns once; nothing loops."""
    seven = make_settings("postgresql://unused/db", redis_server.url, sources=SUPPLIERS)
    six = make_settings("postgresql://unused/db", redis_server.url)
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        writer = LogWriter(VocabularyLog(client, seven))
        await writer.catch_up()
        first = Snapshot.from_lists({"suppliers": ["Acme"]}, 5, identity="db", fields=SEVEN)
        await writer.write_full(first)
        log, state = VocabularyLog(client, six), VocabularyState()
        head = await log.head()
        assert head is not None
        assert head.fields == SEVEN
        with caplog.at_level(logging.WARNING):
            assert await catch_up(log, state)
            await writer.write_full(
                first.apply(Delta({"suppliers": FieldDelta(("Bolt",))}), 6, identity="db")
            )
            assert await catch_up(log, state)
        assert state.snapshot.fields == FIELDS
        assert state.snapshot.version == 6
        differ = [
            r for r in caplog.records if r.__dict__.get("action") == "fields_differ_from_bridge"
        ]
        assert len(differ) == 1
        assert "suppliers" in differ[0].getMessage()
    finally:
        await client.aclose()


def test_openapi_of_an_app_lists_the_configured_fields() -> None:
    seven = create_app(settings_with(SUPPLIERS)).openapi()["components"]["schemas"]
    assert list(seven["VocabularyResponse"]["properties"]) == [*SEVEN, "meta"]
    assert "suppliers" in seven["VocabularyCounts"]["properties"]
    request_fields = seven["MatchRequest"]["properties"]["fields"]["anyOf"][0]["items"]
    assert request_fields["enum"] == list(SEVEN)
    assert seven["MatchItem"]["properties"]["field"]["enum"] == list(SEVEN)
    six = create_app(Settings(_env_file=None)).openapi()["components"]  # type: ignore[call-arg]
    assert list(six["schemas"]["VocabularyResponse"]["properties"]) == [*FIELDS, "meta"]


# --- end to end --------------------------------------------------------------------------------


class Stack:
    """A bridge and two ``vocabsync serve`` instances with ``env``; stopped by :meth:`close`."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.log_dir = Path(tempfile.mkdtemp(prefix="vocabsync-fields-"))
        self.processes: list[ManagedProcess] = []
        self.urls: list[str] = []

    def start(self) -> None:
        self._spawn("bridge", cli_argv("bridge"))
        for index in range(2):
            port = find_free_port()
            argv = cli_argv("serve", "--host", "127.0.0.1", "--port", str(port))
            process = self._spawn(f"api-{index + 1}", argv)
            self.urls.append(f"http://127.0.0.1:{port}")
            wait_http_ready(process, f"{self.urls[-1]}/ready")

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        process = ManagedProcess(name, argv, self.env, self.log_dir).start()
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(f"----- {p.name}\n{p.log_tail(40)}" for p in self.processes)

    def close(self) -> None:
        for process in self.processes:
            process.terminate(grace=5)
        shutil.rmtree(self.log_dir, ignore_errors=True)


@pytest.fixture
def env(db_url: str, redis_server: LocalRedis) -> dict[str, str]:
    execute(db_url, 'CREATE TABLE "Supplier"(id serial PRIMARY KEY, supplier_name text)')
    settings = make_settings(db_url, redis_server.url)
    return {
        **os.environ,
        **FAST_ENV,
        "DATABASE_URL": settings.postgres_conninfo,
        "REDIS_URL": redis_server.url,
        "VOCABSYNC_SOURCES": SUPPLIERS,
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def stack(env: dict[str, str]) -> Iterator[Stack]:
    running = Stack(env)
    try:
        running.start()
        yield running
    finally:
        print(running.logs())
        running.close()


def supplier_objects(url: str) -> tuple[int, int]:
    """Triggers and lookup indexes on "Supplier"."""
    with psycopg.connect(url) as conn:
        triggers = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = '\"Supplier\"'::regclass "
            "AND NOT tgisinternal"
        ).fetchone()
        indexes = conn.execute(
            "SELECT count(*) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = '\"Supplier\"'::regclass "
            "AND a.attname = 'supplier_name'"
        ).fetchone()
    assert triggers is not None
    assert indexes is not None
    return int(triggers[0]), int(indexes[0])


def test_migrate_installs_the_trigger_and_lookup_index_of_an_added_field(
    db_url: str, env: dict[str, str]
) -> None:
    before = run_cli("migrate", "--check", env=env)
    assert before.returncode != 0, before.stdout + before.stderr
    assert "Supplier" in before.stdout + before.stderr
    assert supplier_objects(db_url) == (0, 0)
    applied = run_cli("migrate", env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    after = run_cli("migrate", "--check", env=env)
    assert after.returncode == 0, after.stdout + after.stderr
    triggers, indexes = supplier_objects(db_url)
    assert triggers >= 1
    assert indexes >= 1


@pytest.mark.slow
def test_a_field_added_by_configuration_is_served_and_matched_everywhere(
    db_url: str, env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    assert run_cli("migrate", env=env).returncode == 0
    stack: Stack = request.getfixturevalue("stack")
    execute(db_url, """INSERT INTO "Supplier"(supplier_name) VALUES ('Acme Steel Trading')""")
    execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('Marikina Riverbanks')""")
    with httpx.Client(timeout=10.0) as http:

        def served(url: str) -> dict[str, Any]:
            body: dict[str, Any] = http.get(f"{url}/api/vocabulary").json()
            return body

        def matched(url: str) -> list[tuple[str, str]]:
            answer = http.post(
                f"{url}/api/vocabulary/match",
                json={"text": "what did we pay acme steel trading for marikina riverbanks?"},
            )
            return [(m["field"], m["value"]) for m in answer.json().get("matches", [])]

        for url in stack.urls:
            wait_until(
                lambda url=url: served(url).get("suppliers") == ["Acme Steel Trading"],  # type: ignore[misc]
                timeout=10,
                message=f"{url} serves the supplier",
            )
            body = served(url)
            assert list(body) == [*SEVEN, "meta"]
            assert body["projects"] == ["Marikina Riverbanks"]
            wait_until(
                lambda url=url: ("suppliers", "Acme Steel Trading") in matched(url),  # type: ignore[misc]
                timeout=10,
                message=f"{url} matches the supplier",
            )
            assert ("projects", "Marikina Riverbanks") in matched(url)
            only = http.post(
                f"{url}/api/vocabulary/match",
                json={"text": "acme steel trading", "fields": ["suppliers"]},
            ).json()
            assert [m["field"] for m in only["matches"]] == ["suppliers"]
            schema = http.get(f"{url}/openapi.json").json()["components"]["schemas"]
            assert "suppliers" in schema["VocabularyResponse"]["properties"]
            metrics = http.get(f"{url}/metrics").text
            assert 'vocabsync_vocabulary_terms{field="suppliers"} 1.0' in metrics
        refreshed = http.post(f"{stack.urls[0]}/api/vocabulary/refresh").json()
        assert refreshed["vocabulary_counts"]["suppliers"] == 1
    status = run_cli("status", env=env)
    assert "suppliers (Supplier.supplier_name, added by VOCABSYNC_SOURCES): 1 terms" in (
        status.stdout
    ), status.stdout + status.stderr
