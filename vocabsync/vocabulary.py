"""The vocabulary: six sorted lists of terms, and the versioned snapshot that carries them.

A snapshot records, for every field, the database state it was read from (its *version*), so that
two snapshots can be merged field by field and a field is never replaced by an older read
(ARCHITECTURE invariant 4), whichever process loaded it and in whatever order loads finish.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

FieldName = Literal[
    "projects",
    "project_locations",
    "expense_files",
    "cashflow_files",
    "expense_categories",
    "cashflow_categories",
]
"""The six vocabulary fields, as a type (API schemas validate against it)."""

FIELDS: Final[tuple[str, ...]] = get_args(FieldName)
"""The six vocabulary fields, in the order of the design document's data model."""

META_KEY: Final = "meta"
"""Top-level key of the snapshot's metadata in the Redis JSON value, beside the six lists."""

MAX_COUNTED_IN_PROGRESS: Final = 999


class SnapshotFormatError(ValueError):
    """The stored value is not a vocabulary snapshot (corrupted, foreign or from another tool)."""


def version_from_snapshot(xmax: int, in_progress: int) -> int:
    """Turn a PostgreSQL snapshot (its xmax and number of in-progress transactions) into a version.

    A snapshot taken later has an xmax at least as large, and with an equal xmax it has no more
    transactions in progress (they can only finish). So ``(xmax, -in_progress)`` orders database
    states in time, and equal keys mean the same visible state. Packed into one integer that stays
    exact in JSON, Lua and Prometheus (below 2**53 for 9 * 10**12 transactions).
    """
    return xmax * 1000 + (MAX_COUNTED_IN_PROGRESS - min(in_progress, MAX_COUNTED_IN_PROGRESS))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An immutable vocabulary snapshot: the six term lists with the version each was read at."""

    terms: Mapping[str, tuple[str, ...]]
    versions: Mapping[str, int]
    refreshed_at: float = field(default_factory=time.time)

    @classmethod
    def empty(cls) -> Snapshot:
        """A snapshot that holds nothing and loses every merge (version 0 for each field)."""
        return cls(
            terms={name: () for name in FIELDS},
            versions={name: 0 for name in FIELDS},
            refreshed_at=0.0,
        )

    @classmethod
    def from_lists(
        cls, lists: Mapping[str, Iterable[str]], version: int, refreshed_at: float | None = None
    ) -> Snapshot:
        """A snapshot whose given fields were all read at ``version`` (partial loads allowed)."""
        unknown = set(lists) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown vocabulary fields: {sorted(unknown)}")
        return cls(
            terms={name: tuple(values) for name, values in lists.items()},
            versions={name: version for name in lists},
            refreshed_at=time.time() if refreshed_at is None else refreshed_at,
        )

    @property
    def version(self) -> int:
        """The newest database state any field reflects (0 when nothing was loaded)."""
        return max(self.versions.values(), default=0)

    @property
    def is_complete(self) -> bool:
        """True when every field has been loaded at least once."""
        return all(self.versions.get(name, 0) > 0 for name in FIELDS)

    def get(self, name: str) -> tuple[str, ...]:
        return self.terms.get(name, ())

    def counts(self) -> dict[str, int]:
        return {name: len(self.get(name)) for name in FIELDS}

    def as_lists(self) -> dict[str, list[str]]:
        """The design document's data model: the six lists, always all six keys."""
        return {name: list(self.get(name)) for name in FIELDS}

    def merge(self, newer: Snapshot) -> Snapshot:
        """Field by field, keep whichever side was read from the newer database state.

        Returns ``self`` unchanged (the same object) when ``newer`` brings nothing newer, so
        callers can tell "adopted" from "ignored" by identity.
        """
        terms = dict(self.terms)
        versions = dict(self.versions)
        changed = False
        for name, version in newer.versions.items():
            if version > versions.get(name, 0):
                terms[name] = newer.terms[name]
                versions[name] = version
                changed = True
        if not changed:
            return self
        return Snapshot(
            terms=terms, versions=versions, refreshed_at=max(self.refreshed_at, newer.refreshed_at)
        )

    def is_newer_than(self, other: Snapshot) -> bool:
        """True when some field of this snapshot was read from a newer state than ``other``'s."""
        return any(v > other.versions.get(name, 0) for name, v in self.versions.items())

    # --- JSON codec: the Redis value ---------------------------------------------------------

    def to_json(self) -> bytes:
        """Serialise for the Redis key: meta first (cheap to peek at), then the six lists."""
        document: dict[str, Any] = {
            META_KEY: {
                "version": self.version,
                "field_versions": {name: self.versions.get(name, 0) for name in FIELDS},
                "refreshed_at": self.refreshed_at,
            }
        }
        document.update(self.as_lists())
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Snapshot:
        """Parse a Redis value, refusing anything that is not exactly a snapshot."""
        try:
            document = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SnapshotFormatError(f"not JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise SnapshotFormatError("not a JSON object")
        meta = document.get(META_KEY)
        if not isinstance(meta, dict):
            raise SnapshotFormatError(f"no {META_KEY!r} object")
        field_versions = meta.get("field_versions")
        refreshed_at = meta.get("refreshed_at")
        if not isinstance(field_versions, dict):
            raise SnapshotFormatError("meta.field_versions is not an object")
        if not _is_finite_number(refreshed_at):
            raise SnapshotFormatError("meta.refreshed_at is not a number")
        terms: dict[str, tuple[str, ...]] = {}
        versions: dict[str, int] = {}
        for name in FIELDS:
            values = document.get(name)
            version = field_versions.get(name)
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise SnapshotFormatError(f"{name!r} is not a list of strings")
            if not isinstance(version, int) or isinstance(version, bool) or version < 0:
                raise SnapshotFormatError(f"meta.field_versions.{name} is not a version")
            terms[name] = tuple(values)
            versions[name] = version
        assert isinstance(refreshed_at, int | float)
        return cls(terms=terms, versions=versions, refreshed_at=float(refreshed_at))


def _is_finite_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
