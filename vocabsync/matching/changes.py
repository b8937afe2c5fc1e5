"""What changed between two snapshots, per field: the terms added and the terms removed.

Only for callers that still hand the matcher whole snapshots (``EntityMatcher.on_snapshot``): the
difference is what the index applies. Fields whose term tuples are the same object (unchanged by
a merge) are skipped without a look.
"""

from __future__ import annotations

from dataclasses import dataclass

from vocabsync.vocabulary import Snapshot


@dataclass(frozen=True, slots=True)
class FieldChange:
    added: frozenset[str]
    removed: frozenset[str]


def diff(previous: Snapshot, current: Snapshot) -> dict[str, FieldChange]:
    """Per field, the terms ``current`` has that ``previous`` lacks and the other way round."""
    out: dict[str, FieldChange] = {}
    for name in current.fields:
        before, after = previous.get(name), current.get(name)
        if before is after or before == after:
            continue
        old, new = set(before), set(after)
        change = FieldChange(frozenset(new - old), frozenset(old - new))
        if change.added or change.removed:
            out[name] = change
    return out
