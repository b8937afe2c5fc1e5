"""Unit tests of the pieces without I/O: snapshot model, settings, masking, backoff, coalescing."""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time

import pytest
from hypothesis import given, strategies as st

from tests.waiting import wait_until, wait_until_async
from vocabsync.backoff import Backoff
from vocabsync.config import Settings
from vocabsync.matching import Abbreviations, MatchSettings
from vocabsync.matching.maintainer import IndexMaintainer
from vocabsync.secrets import mask_url
from vocabsync.singleflight import CoalescingRunner
from vocabsync.sources import FieldSource, SourceMap
from vocabsync.vocabulary import FIELDS, Snapshot, SnapshotFormatError, version_from_snapshot

snapshots = st.builds(
    lambda fields, version: Snapshot.from_lists(
        {f: [f"{f}@{version}", "shared"] for f in fields},
        version=version,
        refreshed_at=float(version),
        identity="db-1",
    ),
    st.sets(st.sampled_from(FIELDS), min_size=1),
    st.integers(min_value=1, max_value=10**12),
)


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


# --- snapshot model ---------------------------------------------------------------------


@given(snapshots, snapshots)
def test_a_delta_turns_one_snapshot_into_the_other(old: Snapshot, new: Snapshot) -> None:
    delta = old.delta_to(new)
    assert old.apply(delta, new.version) == new
    assert not new.delta_to(new)
    # Unchanged fields are shared, not copied: a change costs what the change costs.
    applied = old.apply(delta, new.version)
    assert all(applied.get(f) is old.get(f) for f in FIELDS if f not in delta.fields)


def test_version_orders_snapshots_in_time_and_never_collides() -> None:
    assert version_from_snapshot(100, 0) > version_from_snapshot(100, 1)  # one more finished
    assert version_from_snapshot(101, 50) > version_from_snapshot(100, 0)
    # More than 999 transactions in progress still give distinct, ordered versions.
    versions = [version_from_snapshot(5000, n) for n in (998, 999, 1000, 1001, 262_143)]
    assert len(set(versions)) == len(versions)
    assert versions == sorted(versions, reverse=True)


@given(snapshots)
def test_json_round_trip(snapshot: Snapshot) -> None:
    parsed = Snapshot.from_json(snapshot.to_json())
    assert parsed == snapshot
    assert (parsed.version, parsed.identity) == (snapshot.version, snapshot.identity)
    assert snapshot.to_json() is snapshot.to_json(), "encoded once per version"


def test_json_keeps_the_design_documents_data_model() -> None:
    document = json.loads(Snapshot.from_lists({f: ["a"] for f in FIELDS}, version=7).to_json())
    assert set(document) == {*FIELDS, "meta"}
    assert document["projects"] == ["a"]
    assert document["meta"]["version"] == 7


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"null",
        b"[1]",
        b'{"meta": {"field_versions": {}, "refreshed_at": 1}}',
        b'{"meta": {"field_versions": {}, "refreshed_at": "x"}}',
        json.dumps(
            {
                "meta": {"field_versions": dict.fromkeys(FIELDS, 1), "refreshed_at": 1},
                **{f: [1] for f in FIELDS},
            }
        ).encode(),
        json.dumps(
            {
                "meta": {"field_versions": dict.fromkeys(FIELDS, -1), "refreshed_at": 1},
                **{f: [] for f in FIELDS},
            }
        ).encode(),
    ],
)
def test_foreign_values_are_rejected(raw: bytes) -> None:
    with pytest.raises(SnapshotFormatError):
        Snapshot.from_json(raw)


# --- settings -----------------------------------------------------------------------------


def test_design_document_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPABASE_HOST", "db.example.supabase.co")
    monkeypatch.setenv("SUPABASE_PORT", "6543")
    monkeypatch.setenv("SUPABASE_USER", "postgres.ref")
    monkeypatch.setenv("SUPABASE_PASSWORD", "s3cret pass'word")
    monkeypatch.setenv("SUPABASE_SSLMODE", "require")
    monkeypatch.setenv("REDIS_HOST", "cache.internal")
    monkeypatch.setenv("REDIS_PORT", "6380")
    s = settings()
    assert "host=db.example.supabase.co" in s.postgres_conninfo
    assert "port=6543" in s.postgres_conninfo
    assert "sslmode=require" in s.postgres_conninfo
    assert s.redis_connection_url == "redis://cache.internal:6380/0"
    assert "s3cret" not in s.postgres_display
    assert s.vocabulary_ttl_seconds == 3600
    assert s.redis_key == "vocabulary"
    assert s.redis_channel == "vocabulary_updated"
    assert s.pg_channel == "vocabulary_changed"


def test_urls_win_over_host_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPABASE_HOST", "ignored")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:pw@db:5432/app")
    monkeypatch.setenv("REDIS_URL", "redis://:redispw@cache:6379/2")
    s = settings()
    assert s.postgres_conninfo == "postgresql://u:pw@db:5432/app"
    assert s.redis_display == "redis://:***@cache:6379/2"
    assert s.postgres_display == "postgresql://u:***@db:5432/app"


def test_dotenv_file_is_read(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = tmp_path / ".env"  # type: ignore[operator]
    env.write_text("DATABASE_URL=postgresql://from-dotenv/db\nVOCABSYNC_KEY_PREFIX=staging:\n")
    s = Settings(_env_file=str(env))  # type: ignore[call-arg]
    assert s.postgres_conninfo == "postgresql://from-dotenv/db"
    assert s.redis_key == "staging:vocabulary"


def test_sources_are_configured_in_one_place() -> None:
    s = settings(sources='{"projects": "Proyecto.nombre", "expense_files": "Gastos.archivo"}')
    assert s.sources.sources["projects"] == FieldSource("Proyecto", "nombre")
    assert s.sources.sources["project_locations"] == FieldSource("Project", "location")
    assert s.sources.fields_of("Gastos") == ("expense_files",)
    assert not s.sources.is_default
    assert SourceMap.default().is_default


@pytest.mark.parametrize(
    "bad", ['{"No pe": "A.b"}', '{"projects": "no_dot"}', "not json", "[1, 2]"]
)
def test_bad_sources_are_refused_early(bad: str) -> None:
    with pytest.raises(ValueError, match=r"sources|Table\.column|JSON|fields"):
        settings(sources=bad)


def test_channel_name_is_validated() -> None:
    with pytest.raises(ValueError, match="63 bytes"):
        settings(pg_channel="x" * 64)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://user:pa55@host/db", "postgresql://user:***@host/db"),
        ("redis://:pa55@host:6379/0", "redis://:***@host:6379/0"),
        ("host=h password=pa55 user=u", "host=h password=*** user=u"),
        ("host=h password='pa 55' user=u", "host=h password=*** user=u"),
        (
            "postgresql://h/db?password=pa55&sslmode=require",
            "postgresql://h/db?password=***&sslmode=require",
        ),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
    ],
)
def test_passwords_are_masked(text: str, expected: str) -> None:
    assert mask_url(text) == expected


def test_redact_removes_known_secrets_anywhere() -> None:
    s = settings(supabase_host="h", supabase_password="Tr0ub4dor&3")
    assert "Tr0ub4dor&3" not in s.redact("auth failed for Tr0ub4dor&3 at h")


# --- backoff ------------------------------------------------------------------------------


def test_backoff_is_immediate_then_doubles_to_the_cap() -> None:
    backoff = Backoff(initial=5, maximum=300, jitter=0)
    delays = [backoff.next_delay() for _ in range(10)]
    assert delays == [0, 5, 10, 20, 40, 80, 160, 300, 300, 300]
    backoff.reset()
    assert backoff.next_delay() == 0


def test_backoff_jitter_stays_within_ten_percent() -> None:
    samples = []
    for _ in range(200):
        backoff = Backoff(initial=10, maximum=300, jitter=0.1)
        backoff.next_delay()
        samples.append(backoff.next_delay())
    assert all(9 <= s <= 11 for s in samples)
    assert len(set(samples)) > 100, "jitter must spread reconnects"
    assert 9.7 < statistics.mean(samples) < 10.3


# --- coalescing ---------------------------------------------------------------------------


async def test_requests_during_a_run_cause_exactly_one_follow_up() -> None:
    """Requests that arrive while a run is in progress (the gate is still closed) coalesce into
    one follow-up at the highest level any of them asked for, whatever order they came in."""
    started: list[int] = []
    gate = asyncio.Event()

    async def work(level: int, reasons: frozenset[str]) -> int:
        started.append(level)
        await gate.wait()
        return len(started)

    runner: CoalescingRunner[int] = CoalescingRunner(work)
    first = runner.submit(1, "event")
    await wait_until_async(lambda: started == [1], message="the first run started")
    assert runner.running
    assert not gate.is_set()
    early = [runner.submit(1, "event") for _ in range(25)]  # mid-run, below the manual level
    manual = runner.submit(3, "manual")
    late = [runner.submit(1, "event") for _ in range(25)]  # mid-run, after the manual request
    assert started == [1], "nothing starts while the run is in progress"
    gate.set()
    results = await asyncio.gather(first, *early, manual, *late)
    assert started == [1, 3], "one run, then one follow-up at the highest level asked"
    assert results[0] == 1
    assert set(results[1:]) == {2}, "followers get the run that started after their request"
    assert runner.runs == 2


async def test_a_failed_run_fails_its_waiters_and_the_next_one_runs() -> None:
    calls = 0

    async def work(level: int, reasons: frozenset[str]) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database down")
        return calls

    runner: CoalescingRunner[int] = CoalescingRunner(work)
    with pytest.raises(RuntimeError, match="database down"):
        await runner.request(1, "event")
    assert await runner.request(1, "event") == 2


# --- matching index maintenance -----------------------------------------------------------


def corrupt_snapshot(version: int) -> Snapshot:
    """A snapshot every index build fails on (a term that is not text)."""
    return Snapshot.from_lists({"projects": [42]}, version=version)  # type: ignore[list-item]


def test_index_maintenance_that_keeps_failing_backs_off() -> None:
    maintainer = IndexMaintainer(MatchSettings(_env_file=None), Abbreviations.build())  # type: ignore[call-arg]
    maintainer.retry = Backoff(initial=0.1, maximum=1.0, jitter=0.1)
    maintainer.start()
    try:
        started = time.monotonic()
        maintainer.submit(corrupt_snapshot(1))
        wait_until(lambda: maintainer.stats.failures >= 4, message="four failed builds")
        elapsed = time.monotonic() - started
        # Retried at once, then after ~0.1 s, then ~0.2 s: not a rebuild loop.
        assert elapsed >= 0.25, f"4 failures within {elapsed * 1000:.1f} ms: no backoff"
        assert maintainer.stats.failures <= 5
        assert maintainer.index is None
        assert not maintainer.ready
    finally:
        maintainer.close()


def test_index_maintenance_recovers_at_once_from_a_backoff() -> None:
    """A long backoff neither delays a good snapshot nor the worker's shutdown."""
    maintainer = IndexMaintainer(MatchSettings(_env_file=None), Abbreviations.build())  # type: ignore[call-arg]
    maintainer.retry = Backoff(initial=60.0, maximum=60.0, jitter=0.0)
    maintainer.start()
    try:
        maintainer.submit(corrupt_snapshot(1))
        wait_until(lambda: maintainer.stats.failures >= 2, message="backing off")
        good = Snapshot.from_lists({name: [] for name in FIELDS} | {"projects": ["Alpha Tower"]}, 2)
        maintainer.submit(good)
        assert maintainer.wait_ready(10.0), "a good snapshot ends the backoff"
        index = maintainer.index
        assert index is not None
        assert index.version == 2
        assert [m.value for m in index.match("alpha tower")] == ["Alpha Tower"]
        maintainer.submit(corrupt_snapshot(3))
        wait_until(lambda: maintainer.stats.failures >= 4, message="backing off again")
    finally:
        started = time.monotonic()
        maintainer.close()
    assert time.monotonic() - started < 5.0, "close() interrupts the backoff"
    assert not [t for t in threading.enumerate() if t.name == "vocabsync-match-index"]


def test_an_empty_token_means_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOCABSYNC_REFRESH_TOKEN", "")
    monkeypatch.setenv("VOCABSYNC_READ_TOKEN", "   ")
    s = settings()
    assert s.refresh_token is None
    assert s.read_token is None


@given(snapshots)
async def test_the_json_encoded_in_steps_is_the_same_bytes(snapshot: Snapshot) -> None:
    stepped = await Snapshot(
        dict(snapshot.terms), snapshot.version, snapshot.identity, snapshot.refreshed_at
    ).to_json_in_steps()
    assert stepped == snapshot.to_json()
    assert Snapshot.from_json(stepped) == snapshot
