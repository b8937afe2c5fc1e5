"""What changed between two snapshots, and the running difference from the base index.

A change to the vocabulary is usually a handful of terms. The index keeps its base (built from an
older snapshot) and records, per field, the terms added since (the overlay) and removed since (the
tombstones). Applying a snapshot's difference to that record is cheap, and an add followed by a
remove (a rename back, a delete of a new term) cancels out, so the record stays as small as the
true distance from the base.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from vocabsync.vocabulary import FIELDS, Snapshot


@dataclass(frozen=True, slots=True)
class FieldChange:
    added: frozenset[str]
    removed: frozenset[str]


def diff(previous: Snapshot, current: Snapshot) -> dict[str, FieldChange]:
    """Per field, the terms ``current`` has that ``previous`` lacks and the other way round."""
    out: dict[str, FieldChange] = {}
    for name in FIELDS:
        before, after = previous.get(name), current.get(name)
        if before is after or before == after:
            continue
        old, new = set(before), set(after)
        change = FieldChange(frozenset(new - old), frozenset(old - new))
        if change.added or change.removed:
            out[name] = change
    return out


@dataclass(slots=True)
class Delta:
    """Terms added to / removed from the base, per field (mutable, owned by the worker)."""

    added: dict[str, set[str]] = field(default_factory=dict)
    removed: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def between(cls, base: Snapshot, current: Snapshot) -> Delta:
        delta = cls()
        delta.apply(diff(base, current))
        return delta

    def apply(self, changes: Mapping[str, FieldChange]) -> None:
        for name, change in changes.items():
            added = self.added.setdefault(name, set())
            removed = self.removed.setdefault(name, set())
            for value in change.added:
                if value in removed:
                    removed.discard(value)  # back to what the base has
                else:
                    added.add(value)
            for value in change.removed:
                if value in added:
                    added.discard(value)  # never reached the base
                else:
                    removed.add(value)

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.added.values()) + sum(len(v) for v in self.removed.values())

    def frozen(self) -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]]:
        """Immutable copies for an index (readers on other threads must never see a mutation)."""
        return (
            {k: frozenset(v) for k, v in self.added.items() if v},
            {k: frozenset(v) for k, v in self.removed.items() if v},
        )
