"""The log protocol without I/O: a state only ever applies a delta on top of exactly its base.

Deliveries are dropped, duplicated and reordered at random; whatever arrives, the state is at
every moment exactly the snapshot of the position it claims, and a full read after the last
entry (what a follower does on any gap) always ends exact.
"""

from __future__ import annotations

import itertools

from hypothesis import given, strategies as st

from vocabsync.services.vocabulary_log import LogEntry
from vocabsync.services.vocabulary_state import VocabularyState
from vocabsync.vocabulary import FIELDS, Snapshot

terms = st.sampled_from([f"t{i}" for i in range(8)])
states = st.lists(
    st.fixed_dictionaries({name: st.sets(terms, max_size=4) for name in FIELDS[:2]}),
    min_size=2,
    max_size=8,
)


def build_log(lists: list[dict[str, set[str]]]) -> tuple[list[Snapshot], list[LogEntry]]:
    snapshots = [
        Snapshot.from_lists(state, version=index + 1, identity="db")
        for index, state in enumerate(lists)
    ]
    entries = [
        LogEntry(
            id=f"{index + 1}-0",
            prev=f"{index}-0",
            kind="delta",
            version=after.version,
            identity="db",
            refreshed_at=0.0,
            delta=before.delta_to(after),
        )
        for index, (before, after) in enumerate(itertools.pairwise(snapshots))
    ]
    return snapshots, entries


@given(states, st.data())
def test_random_deliveries_never_apply_a_delta_on_the_wrong_base(
    lists: list[dict[str, set[str]]], data: st.DataObject
) -> None:
    snapshots, entries = build_log(lists)
    by_position = {f"{index}-0": snap for index, snap in enumerate(snapshots)}
    delivered = data.draw(st.lists(st.sampled_from(entries), max_size=3 * len(entries)))
    state = VocabularyState()
    state.adopt(snapshots[0], "0-0", "redis")
    reloads = 0
    for entry in delivered:
        if not state.apply(entry):
            reloads += 1  # a follower reads the full state here: at the entry's position
            position = entry.id
            state.adopt(by_position[position], position, "redis")
        assert state.snapshot == by_position[state.position], "state differs from its position"
    final = f"{len(entries)}-0"
    if state.position != final:
        state.adopt(by_position[final], final, "redis")
    assert state.snapshot == snapshots[-1]


def test_in_order_delivery_needs_no_reload() -> None:
    snapshots, entries = build_log(
        [{"projects": {"a"}}, {"projects": {"a", "b"}}, {"projects": {"b"}}]
    )
    state = VocabularyState()
    state.adopt(snapshots[0], "0-0", "redis")
    assert all(state.apply(entry) for entry in entries)
    assert state.deltas_applied == 2
    assert state.snapshot == snapshots[-1]
    assert all(state.apply(entry) for entry in entries), "duplicates are ignored"
    assert state.deltas_applied == 2


def test_an_entry_from_another_database_history_is_not_applied() -> None:
    _, entries = build_log([{"projects": {"a"}}, {"projects": {"b"}}])
    state = VocabularyState()
    state.adopt(Snapshot.from_lists({"projects": ["a"]}, 1, identity="other"), "0-0", "redis")
    assert not state.apply(entries[0])
