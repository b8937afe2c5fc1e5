"""The index maintainer: incremental updates, coalescing, rebuilds, and its thread's lifetime."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.waiting import wait_until
from vocabsync.matching import Abbreviations, MatchSettings
from vocabsync.matching.changes import Delta, FieldChange, diff
from vocabsync.matching.maintainer import IndexMaintainer
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


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "vocabsync-match-index"]


def test_diff_and_delta_cancel_out() -> None:
    before, after = snapshot(1), snapshot(2, projects=["Pasig Bridge Rehabilitation", "New One"])
    assert diff(before, after) == {
        "projects": FieldChange(
            frozenset({"New One"}), frozenset({"Marikina Flood Control Phase 1"})
        )
    }
    delta = Delta()
    delta.apply(diff(before, after))
    delta.apply(diff(after, before))
    assert delta.size == 0
    assert diff(before, before) == {}


def test_first_snapshot_builds_the_index(maintainer: IndexMaintainer) -> None:
    maintainer.submit(snapshot(5))
    assert maintainer.wait_ready(10)
    index = maintainer.index
    assert index is not None
    assert index.version == 5
    assert matched(maintainer, "pasig bridge rehabilitation") == {"Pasig Bridge Rehabilitation"}


def test_changes_go_to_the_overlay_without_a_rebuild(maintainer: IndexMaintainer) -> None:
    maintainer.submit(snapshot(1))
    assert maintainer.wait_ready(10)
    renamed = ["Marikina Flood Control Phase 1", "Pasig Bridge Rehab Phase 2"]
    maintainer.submit(snapshot(2, projects=renamed))
    wait_until(lambda: maintainer.index is not None and maintainer.index.version == 2)
    assert matched(maintainer, "Pasig Bridge Rehabilitation Phase 2") == {
        "Pasig Bridge Rehab Phase 2"
    }
    assert "Pasig Bridge Rehabilitation" not in matched(maintainer, "Pasig Bridge Rehabilitation")
    assert maintainer.stats.base_builds == 1
    assert maintainer.overlay_size == 2  # one added, one tombstone


def test_only_the_newest_snapshot_is_applied_when_they_come_fast() -> None:
    maintainer = make()
    try:
        for version in range(1, 51):  # submitted before the worker runs: nothing is queued
            maintainer.submit(snapshot(version, projects=[f"Project {version}"]))
        maintainer.start()
        assert maintainer.wait_ready(10)
        wait_until(lambda: maintainer.index is not None and maintainer.index.version == 50)
        assert maintainer.stats.snapshots_applied == 1
        assert matched(maintainer, "project 50") == {"Project 50"}
        assert matched(maintainer, "project 49") == set()
    finally:
        maintainer.close()


def test_a_full_overlay_is_absorbed_by_a_rebuild() -> None:
    maintainer = make(overlay_max_terms=3, quiet_seconds=3600)
    maintainer.start()
    try:
        maintainer.submit(snapshot(1))
        assert maintainer.wait_ready(10)
        names = ["Marikina Flood Control Phase 1"]
        for version in range(2, 8):
            names.append(f"Antipolo Road {version}")
            maintainer.submit(snapshot(version, projects=list(names)))
            wait_until(
                lambda v=version: maintainer.index is not None and maintainer.index.version == v
            )
        wait_until(lambda: maintainer.stats.base_builds >= 2, message="rebuild")
        wait_until(lambda: maintainer.overlay_size <= 3)
        assert matched(maintainer, "antipolo road 7 and antipolo road 2") == {
            "Antipolo Road 7",
            "Antipolo Road 2",
        }
    finally:
        maintainer.close()


def test_a_quiet_vocabulary_gets_its_overlay_folded_into_the_base() -> None:
    maintainer = make(quiet_seconds=0.05)
    maintainer.start()
    try:
        maintainer.submit(snapshot(1))
        assert maintainer.wait_ready(10)
        maintainer.submit(snapshot(2, expense_categories=["Diesel", "Cement"]))
        wait_until(lambda: maintainer.stats.base_builds >= 2, message="quiet rebuild")
        wait_until(lambda: maintainer.overlay_size == 0)
        index = maintainer.index
        assert index is not None
        assert (index.overlay, index.version) == (None, 2)
        assert matched(maintainer, "cement") == {"Cement"}
    finally:
        maintainer.close()


def test_close_stops_the_thread_and_start_resumes() -> None:
    maintainer = make()
    maintainer.start()
    maintainer.submit(snapshot(1))
    assert maintainer.wait_ready(10)
    assert len(worker_threads()) == 1
    maintainer.close()
    assert worker_threads() == []
    assert maintainer.index is not None  # still readable after close
    maintainer.submit(snapshot(2, project_locations=["Taguig"]))
    maintainer.start()
    wait_until(lambda: maintainer.index is not None and maintainer.index.version == 2)
    assert matched(maintainer, "taguig") == {"Taguig"}
    maintainer.close()
    assert worker_threads() == []


def test_requests_are_served_by_the_old_index_during_a_rebuild() -> None:
    """A rebuild is done in chunks; between them the previous index keeps answering."""
    big = [f"Barangay Hall Number {i}" for i in range(3000)]
    maintainer = make(overlay_max_terms=1, quiet_seconds=3600)
    maintainer.start()
    try:
        maintainer.submit(snapshot(1, projects=big))
        assert maintainer.wait_ready(30)
        maintainer.submit(snapshot(2, projects=[*big, "Taguig Seawall", "Taguig Port"]))
        wait_until(lambda: maintainer.index is not None and maintainer.index.version == 2)
        # The overlay is over its limit, so a rebuild runs; the index keeps answering meanwhile.
        assert matched(maintainer, "taguig seawall") == {"Taguig Seawall"}
        wait_until(lambda: maintainer.stats.base_builds >= 2, timeout=30)
        assert matched(maintainer, "taguig port") == {"Taguig Port"}
    finally:
        maintainer.close()
