"""The index maintainer: deltas in place, full states, snapshots, failures, its thread's life."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any
from unittest.mock import patch

import pytest

from tests.waiting import wait_until, wait_until_async
from vocabsync.backoff import Backoff
from vocabsync.matching import Abbreviations, MatchSettings
from vocabsync.matching.changes import FieldChange, diff
from vocabsync.matching.layer import Layer
from vocabsync.matching.maintainer import IndexMaintainer
from vocabsync.services.entity_matcher import EntityMatcher, IndexNotReadyError
from vocabsync.vocabulary import FIELDS, Snapshot

BASE = {
    "projects": ["Marikina Flood Control Phase 1", "Pasig Bridge Rehabilitation"],
    "project_locations": ["Pasig"],
    "expense_files": [],
    "cashflow_files": [],
    "expense_categories": ["Diesel"],
    "cashflow_categories": ["Diesel"],
}


def snapshot(version: int, **changes: list[str]) -> Snapshot:
    lists = {name: list(BASE[name]) for name in FIELDS}
    lists.update(changes)
    return Snapshot.from_lists(lists, version=version)


def make(**values: Any) -> IndexMaintainer:
    settings = MatchSettings(_env_file=None, **values)  # type: ignore[call-arg]
    return IndexMaintainer(settings, Abbreviations.build())


@pytest.fixture
def maintainer() -> Iterator[IndexMaintainer]:
    instance = make()
    instance.start()
    try:
        yield instance
    finally:
        instance.close()


def matched(maintainer: IndexMaintainer, text: str) -> set[str]:
    index = maintainer.index
    return set() if index is None else {m.value for m in index.match(text)}


def at_version(maintainer: IndexMaintainer, version: int) -> bool:
    index = maintainer.index
    return index is not None and index.version == version and maintainer.pending == 0


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "vocabsync-match-index"]


def test_diff_of_two_snapshots() -> None:
    before, after = snapshot(1), snapshot(2, projects=["Pasig Bridge Rehabilitation", "New One"])
    assert diff(before, after) == {
        "projects": FieldChange(
            frozenset({"New One"}), frozenset({"Marikina Flood Control Phase 1"})
        )
    }
    assert diff(before, before) == {}


# --- deltas and full states -----------------------------------------------------------------


def test_a_full_state_builds_the_index_and_deltas_change_it_in_place(
    maintainer: IndexMaintainer,
) -> None:
    maintainer.load_full(5, BASE)
    assert maintainer.wait_ready(10)
    index = maintainer.index
    assert index is not None
    assert index.version == 5
    maintainer.apply_delta(
        6,
        {"projects": ["Pasig Bridge Rehab Phase 2"]},
        {"projects": ["Pasig Bridge Rehabilitation"]},
    )
    wait_until(lambda: at_version(maintainer, 6), message="delta applied")
    assert maintainer.index is index, "changed in place, not rebuilt"
    assert matched(maintainer, "Pasig Bridge Rehabilitation Phase 2") == {
        "Pasig Bridge Rehab Phase 2"
    }
    assert "Pasig Bridge Rehabilitation" not in matched(maintainer, "Pasig Bridge Rehabilitation")
    assert (maintainer.stats.full_builds, maintainer.stats.deltas_applied) == (1, 1)


def test_no_full_build_runs_while_deltas_keep_coming(maintainer: IndexMaintainer) -> None:
    """Hundreds of changes (adds, removes, renames) over time: one build, at the start."""
    maintainer.load_full(1, BASE)
    assert maintainer.wait_ready(10)
    version = 1
    for round_ in range(60):
        for lot in range(5):
            version += 1
            name = f"Antipolo Seawall Lot {round_ * 5 + lot}"
            maintainer.apply_delta(version, {"projects": [name]}, {})
        version += 1
        maintainer.apply_delta(version, {}, {"projects": [f"Antipolo Seawall Lot {round_ * 5}"]})
        if round_ % 10 == 0:
            wait_until(lambda v=version: at_version(maintainer, v))
    wait_until(lambda: at_version(maintainer, version), message="all deltas applied")
    assert maintainer.stats.full_builds == 1
    assert maintainer.stats.deltas_applied == 360
    assert matched(maintainer, "antipolo seawall lot 7 and antipolo seawall lot 5") == {
        "Antipolo Seawall Lot 7"
    }
    index = maintainer.index
    assert index is not None
    assert index.term_count == sum(map(len, BASE.values())) + 300 - 60


def test_deltas_queued_behind_a_full_state_apply_after_it_in_order() -> None:
    """Handed over before the worker runs: the full state, then deltas (one of them for a
    version the full state already has, dropped); all in order, on top of the full state."""
    maintainer = make()
    try:
        maintainer.apply_delta(3, {"projects": ["Never Seen"]}, {})  # before any full state
        maintainer.load_full(10, BASE)  # drops what was queued before it
        maintainer.apply_delta(11, {"projects": ["Taguig Port"]}, {})
        maintainer.apply_delta(10, {"projects": ["Stale Change"]}, {})
        maintainer.apply_delta(12, {"projects": ["Taguig Seawall"]}, {"projects": ["Taguig Port"]})
        assert maintainer.pending == 4
        maintainer.start()
        wait_until(lambda: at_version(maintainer, 12), message="caught up")
        assert matched(maintainer, "taguig seawall, taguig port, stale change, never seen") == {
            "Taguig Seawall"
        }
        assert maintainer.stats.deltas_dropped == 1
        assert (maintainer.stats.full_builds, maintainer.stats.deltas_applied) == (1, 2)
    finally:
        maintainer.close()


def test_a_delta_before_any_full_state_is_dropped(maintainer: IndexMaintainer) -> None:
    maintainer.apply_delta(3, {"projects": ["Lone Change"]}, {})
    wait_until(lambda: maintainer.stats.deltas_dropped == 1)
    assert maintainer.index is None


def test_a_full_state_close_to_the_index_is_applied_as_its_difference(
    maintainer: IndexMaintainer,
) -> None:
    maintainer.load_full(1, BASE)
    assert maintainer.wait_ready(10)
    index = maintainer.index
    maintainer.load_full(9, {**BASE, "expense_categories": ["Diesel", "Cement"]})
    wait_until(lambda: at_version(maintainer, 9))
    assert maintainer.index is index
    assert (maintainer.stats.full_builds, maintainer.stats.reloads_applied) == (1, 1)
    assert matched(maintainer, "cement") == {"Cement"}


def test_a_new_vocabulary_is_built_while_the_old_index_answers(
    maintainer: IndexMaintainer,
) -> None:
    """A full state unlike the index (a reset) is built into a new index; until it is swapped
    in, questions are answered from the old one."""
    maintainer.load_full(1, BASE)
    assert maintainer.wait_ready(10)
    old = maintainer.index
    gate = threading.Event()
    reading = threading.Event()

    def slow_terms() -> Iterator[str]:
        yield "Quezon City Hall"
        reading.set()
        gate.wait(10)
        yield "Quezon Memorial Circle"

    maintainer.load_full(1_000, {"projects": slow_terms()})
    assert reading.wait(10)
    assert maintainer.index is old
    assert matched(maintainer, "pasig bridge rehabilitation") == {"Pasig Bridge Rehabilitation"}
    gate.set()
    wait_until(lambda: at_version(maintainer, 1_000), message="new index swapped in")
    assert maintainer.index is not old
    assert matched(maintainer, "quezon memorial circle, pasig bridge rehabilitation") == {
        "Quezon Memorial Circle"
    }
    assert maintainer.stats.full_builds == 2


# --- snapshots (for a cache that only has snapshots) ----------------------------------------


def test_snapshots_are_applied_as_their_difference(maintainer: IndexMaintainer) -> None:
    maintainer.submit(snapshot(1))
    assert maintainer.wait_ready(10)
    renamed = ["Marikina Flood Control Phase 1", "Pasig Bridge Rehab Phase 2"]
    maintainer.submit(snapshot(2, projects=renamed))
    wait_until(lambda: at_version(maintainer, 2))
    assert matched(maintainer, "Pasig Bridge Rehabilitation Phase 2") == {
        "Pasig Bridge Rehab Phase 2"
    }
    assert maintainer.stats.full_builds == 1
    assert maintainer.stats.snapshots_applied == 2


def test_only_the_newest_snapshot_is_applied_when_they_come_fast() -> None:
    maintainer = make()
    try:
        for version in range(1, 51):  # submitted before the worker runs: nothing is queued
            maintainer.submit(snapshot(version, projects=[f"Project {version}"]))
        maintainer.start()
        assert maintainer.wait_ready(10)
        wait_until(lambda: at_version(maintainer, 50))
        assert maintainer.stats.snapshots_applied == 1
        assert matched(maintainer, "project 50") == {"Project 50"}
        assert matched(maintainer, "project 49") == set()
    finally:
        maintainer.close()


# --- the thread -----------------------------------------------------------------------------


def test_close_stops_the_thread_and_start_resumes() -> None:
    maintainer = make()
    maintainer.start()
    maintainer.load_full(1, BASE)
    assert maintainer.wait_ready(10)
    assert len(worker_threads()) == 1
    maintainer.close()
    assert worker_threads() == []
    assert maintainer.index is not None  # still readable after close
    maintainer.apply_delta(2, {"project_locations": ["Taguig"]}, {})
    maintainer.start()
    wait_until(lambda: at_version(maintainer, 2))
    assert matched(maintainer, "taguig") == {"Taguig"}
    maintainer.close()
    assert worker_threads() == []


# --- failures -------------------------------------------------------------------------------


def corrupt_snapshot(version: int) -> Snapshot:
    """A snapshot every index build fails on (a term that is not text)."""
    return Snapshot.from_lists({"projects": [42]}, version=version)  # type: ignore[list-item]


def test_index_maintenance_that_keeps_failing_backs_off() -> None:
    maintainer = make()
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


def test_a_new_full_state_ends_a_backoff_and_close_interrupts_it() -> None:
    maintainer = make()
    maintainer.retry = Backoff(initial=60.0, maximum=60.0, jitter=0.0)
    maintainer.start()
    try:
        maintainer.submit(corrupt_snapshot(1))
        wait_until(lambda: maintainer.stats.failures >= 2, message="backing off")
        maintainer.load_full(2, {"projects": ["Alpha Tower"]})
        assert maintainer.wait_ready(10.0), "a good full state ends the backoff"
        wait_until(lambda: at_version(maintainer, 2))
        assert matched(maintainer, "alpha tower") == {"Alpha Tower"}
        maintainer.apply_delta(3, {"projects": [42]}, {})  # type: ignore[list-item]
        wait_until(lambda: maintainer.stats.failures >= 4, message="backing off again")
    finally:
        started = time.monotonic()
        maintainer.close()
    assert time.monotonic() - started < 5.0, "close() interrupts the backoff"
    assert worker_threads() == []


def test_a_failed_delta_is_recovered_by_a_rebuild_that_includes_it() -> None:
    """The index may be half changed when a delta fails: the worker rebuilds from the index's
    terms with the change applied, and later deltas follow on top."""
    maintainer = make()
    maintainer.retry = Backoff(initial=0.01, maximum=0.05, jitter=0.0)
    original = Layer.add
    failures = iter([True])

    def flaky_add(self: Layer, field: str, value: str) -> bool:
        if value == "Flaky Tower" and next(failures, False):
            raise RuntimeError("simulated failure")
        return original(self, field, value)

    maintainer.start()
    try:
        maintainer.load_full(1, BASE)
        assert maintainer.wait_ready(10)
        with patch.object(Layer, "add", flaky_add):
            maintainer.apply_delta(
                2,
                {"projects": ["Solid Tower", "Flaky Tower"]},
                {"projects": ["Pasig Bridge Rehabilitation"]},
            )
            maintainer.apply_delta(3, {"projects": ["Late Tower"]}, {})
            wait_until(lambda: at_version(maintainer, 3), message="recovered")
        assert maintainer.stats.failures == 1
        assert maintainer.stats.full_builds == 2  # the first one, and the recovery
        assert matched(
            maintainer, "solid tower, flaky tower, late tower, pasig bridge rehabilitation"
        ) == {"Solid Tower", "Flaky Tower", "Late Tower", "Pasig"}  # the project is gone
    finally:
        maintainer.close()


# --- the service the cache calls ------------------------------------------------------------


async def test_the_entity_matcher_follows_load_full_and_apply_delta() -> None:
    """What the cache calls on the event loop: both only hand the work over (nothing changes
    before the worker runs), and the matcher follows them without a rebuild."""
    matcher = EntityMatcher(MatchSettings(_env_file=None))  # type: ignore[call-arg]
    matcher.load_full(7, BASE)
    matcher.apply_delta(
        8, {"projects": ["Taguig Port"]}, {"projects": ["Pasig Bridge Rehabilitation"]}
    )
    assert (matcher.ready, matcher.maintainer.pending) == (False, 2)
    matcher.start()
    try:
        assert await matcher.wait_ready(10)
        await wait_until_async(lambda: matcher.version == 8, message="delta applied")
        result = matcher.match("taguig port or pasig bridge rehabilitation", fields=["projects"])
        assert (result.version, [m.value for m in result.matches]) == (8, ["Taguig Port"])
        matcher.apply_delta(9, {"expense_categories": ["Cement"]}, {})
        await wait_until_async(lambda: matcher.version == 9)
        assert [m.value for m in matcher.match_entities("cement")] == ["Cement"]
        status = matcher.status()
        assert (status["terms"], status["full_builds"], status["deltas_applied"]) == (6, 1, 2)
    finally:
        matcher.close()
    assert worker_threads() == []


def test_a_disabled_matcher_ignores_changes() -> None:
    matcher = EntityMatcher(MatchSettings(_env_file=None, enabled=False))  # type: ignore[call-arg]
    matcher.load_full(1, BASE)
    matcher.apply_delta(2, {"projects": ["Taguig Port"]}, {})
    matcher.start()
    assert not matcher.ready
    assert worker_threads() == []
    with pytest.raises(IndexNotReadyError, match="disabled"):
        matcher.match("taguig port")
