"""The vocabulary: sets of terms, one immutable :class:`Snapshot` per version, and deltas.

The fields are configuration (:class:`~vocabsync.sources.SourceMap`): the design document's six
(:data:`FIELDS`), then any a deployment adds. A snapshot carries its own field names, so code that
serialises or compares it never needs to know which fields are configured.

A snapshot is never mutated. Applying a :class:`Delta` makes a new snapshot that shares every
unchanged field with the old one, and changed fields are persistent maps (``immutables.Map``, a
hash array mapped trie), so a change of a few terms costs a few trie nodes whatever the size of
the vocabulary (ARCHITECTURE invariant 8). Readers hold a snapshot as long as they like:
``get_vocabulary()`` hands out the current object itself, no copy.

Every snapshot records where it was read: the database's *identity* (which database history) and
its *version* inside that history (from ``pg_current_snapshot()``), so states of one history are
ordered and a state of another history is recognised and replaced, never merged (invariant 4).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Iterable, Iterator, Mapping, Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

import immutables

from vocabsync.sorted_terms import SortedTerms

FieldName = Literal[
    "projects",
    "project_locations",
    "expense_files",
    "cashflow_files",
    "expense_categories",
    "cashflow_categories",
]
"""The design document's six fields, as a type (configured fields can add more)."""

FIELDS: Final[tuple[str, ...]] = get_args(FieldName)
"""The design document's six fields, in its data model's order: the default field set, and the
first fields of every configured one."""

META_KEY: Final = "meta"
"""Top-level key of the snapshot's metadata in the Redis JSON value, beside the field lists."""

IN_PROGRESS_BITS: Final = 20
"""PostgreSQL caps backends (and so prepared plus running transactions) far below 2**20."""


class SnapshotFormatError(ValueError):
    """The stored value is not a vocabulary snapshot (corrupted, foreign or from another tool)."""


def version_from_snapshot(xmax: int, in_progress: int) -> int:
    """Turn a PostgreSQL snapshot (its xmax and number of in-progress transactions) into a version.

    A snapshot taken later has an xmax at least as large, and with an equal xmax it has no more
    transactions in progress (they can only finish, and no new transaction id is handed out
    below xmax). So ``(xmax, -in_progress)`` orders database states in time and equal keys mean
    the same visible state. Packed exactly into one integer: the count takes the low 20 bits,
    which no PostgreSQL can exceed (its backend limit is 2**18), so two states never share one.
    """
    limit = (1 << IN_PROGRESS_BITS) - 1
    if not 0 <= in_progress <= limit:
        raise ValueError(f"in-progress transaction count {in_progress} out of range")
    return (xmax << IN_PROGRESS_BITS) | (limit - in_progress)


def xmax_of(version: int) -> int:
    """The transaction horizon a version was read at (for display and metrics)."""
    return version >> IN_PROGRESS_BITS


class TermSet(AbstractSet[str]):
    """One field's terms: an immutable set whose changed copies cost what the change costs.

    A set is a ``frozenset`` read whole (cheap to build: a million terms from Redis in tens of
    milliseconds) plus two persistent maps (``immutables.Map``, a hash array mapped trie) of the
    terms added to it and removed from it since. A change copies a few trie nodes, whatever the
    size; once the changes outgrow a sixteenth of the base they are folded into a new base, so a
    membership test stays at most three hash lookups.

    Iteration is in sorted (code point) order, like the loader's ``COLLATE "C"``. The order is
    built on first use (one sort) and from then on carried to every changed copy at the cost of
    the change (:class:`~vocabsync.sorted_terms.SortedTerms`), so a process that serves the
    sorted lists (the bridge's seed key, GET /api/vocabulary) never sorts a large field again.
    """

    __slots__ = ("_added", "_base", "_json", "_order", "_removed")

    def __init__(self, terms: Iterable[str] = ()) -> None:
        self._base: frozenset[str] = terms if isinstance(terms, frozenset) else frozenset(terms)
        self._added: immutables.Map[str, None] = _EMPTY_MAP
        self._removed: immutables.Map[str, None] = _EMPTY_MAP
        self._order: SortedTerms | None = None
        self._json: bytes | None = None
        """The sorted terms as a JSON array, once someone encoded them."""

    def __contains__(self, term: object) -> bool:
        if term in self._base:
            return term not in self._removed
        return term in self._added

    def __len__(self) -> int:
        return len(self._base) + len(self._added) - len(self._removed)

    def __iter__(self) -> Iterator[str]:
        return iter(self.order())

    def __repr__(self) -> str:
        return f"TermSet({len(self)} terms)"

    def __eq__(self, other: object) -> bool:
        """Equal to a set with the same terms, or to the sorted sequence of its terms."""
        if isinstance(other, tuple | list):
            return self.sorted() == tuple(other)
        if isinstance(other, AbstractSet):
            return len(self) == len(other) and all(term in other for term in self.unordered())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def frozen(self) -> frozenset[str]:
        """The terms as a frozenset: free when no change is pending, else one O(size) copy."""
        if not self._added and not self._removed:
            return self._base
        return frozenset(self.unordered())

    def unordered(self) -> Iterator[str]:
        """The terms in no particular order (no sort: for diffs and indexes)."""
        if self._removed:
            removed = self._removed
            yield from (term for term in self._base if term not in removed)
        else:
            yield from self._base
        yield from self._added

    def order(self) -> SortedTerms:
        """The terms in sorted order (sorted once per lineage, then kept up to date)."""
        if self._order is None:
            self._order = SortedTerms.from_sorted(sorted(self.unordered()))
        return self._order

    def sorted(self) -> tuple[str, ...]:
        """The sorted terms as one tuple (O(size) on first use per version)."""
        return self.order().flat()

    def to_json(self) -> bytes:
        """The sorted terms as a JSON array; only the chunks a change touched are encoded."""
        if self._json is None:
            self._json = _json_array(chunk.json() for chunk in self.order().chunks)
        return self._json

    async def json_in_steps(self, step: int = 5000) -> bytes:
        """:meth:`to_json` with the event loop free after every ``step`` terms encoded (one
        ``json.dumps`` of half a million terms holds the GIL for a quarter of a second)."""
        if self._json is None:
            pieces: list[bytes] = []
            pending = 0
            for chunk in self.order().chunks:
                if not chunk.encoded:
                    pending += len(chunk.terms)
                pieces.append(chunk.json())
                if pending >= step:
                    pending = 0
                    await asyncio.sleep(0)
            self._json = _json_array(pieces)
        return self._json

    def changed(self, added: Iterable[str], removed: Iterable[str]) -> TermSet:
        """A new set with ``added`` and without ``removed`` (a term in both ends up present);
        costs what the change costs, plus now and then one fold of the changes into the base."""
        added, removed = tuple(added), tuple(removed)
        if len(added) + len(removed) > self._fold_limit():
            child, new, gone = self._rebuilt(added, removed)
        else:
            child, new, gone = self._overlaid(added, removed)
        if self._order is not None:
            child._order = self._order.changed(new, gone)
        return child

    def _fold_limit(self) -> int:
        return max(FOLD_AT, len(self._base) // 16)

    def _overlaid(
        self, added: tuple[str, ...], removed: tuple[str, ...]
    ) -> tuple[TermSet, list[str], list[str]]:
        """The change recorded in the overlays (folded in once they grow past the limit)."""
        base = self._base
        plus, minus = self._added.mutate(), self._removed.mutate()
        gone: list[str] = []
        for term in removed:
            if term in plus:
                del plus[term]
            elif term in base and term not in minus:
                minus[term] = None
            else:
                continue
            gone.append(term)
        new: list[str] = []
        for term in added:
            if term in base:
                if term not in minus:
                    continue
                del minus[term]
            elif term in plus:
                continue
            else:
                plus[term] = None
            new.append(term)
        child = TermSet(base)
        child._added, child._removed = plus.finish(), minus.finish()
        if len(child._added) + len(child._removed) > self._fold_limit():
            child._base = frozenset(child.unordered())
            child._added = child._removed = _EMPTY_MAP
        return child, new, gone

    def _rebuilt(
        self, added: tuple[str, ...], removed: tuple[str, ...]
    ) -> tuple[TermSet, list[str], list[str]]:
        """A large change (a bulk import): one new base in linear time, no trie inserts."""
        current = set(self.unordered())
        gone: list[str] = []
        for term in removed:
            if term in current:
                current.remove(term)
                gone.append(term)
        new: list[str] = []
        for term in added:
            if term not in current:
                current.add(term)
                new.append(term)
        return TermSet(frozenset(current)), new, gone


_EMPTY_MAP: Final[immutables.Map[str, None]] = immutables.Map()
EMPTY_TERMS: Final = TermSet()
FOLD_AT: Final = 1024
"""Changes a set keeps beside its base before folding them in, at the least."""


def set_difference(new: TermSet, old: TermSet) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(added, removed), each sorted, that turn ``old`` into ``new``: two C-level set
    differences, not a Python loop over a million terms."""
    new_terms, old_terms = new.frozen(), old.frozen()
    return tuple(sorted(new_terms - old_terms)), tuple(sorted(old_terms - new_terms))


def _json_array(pieces: Iterable[bytes]) -> bytes:
    return b"[" + b",".join(piece for piece in pieces if piece) + b"]"


@dataclass(frozen=True, slots=True)
class FieldDelta:
    """What one field gained and lost between two versions (disjoint, each term at most once)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


@dataclass(frozen=True, slots=True)
class Delta:
    """The exact difference between two snapshots, field by field (only changed fields)."""

    fields: Mapping[str, FieldDelta] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(self.fields.values())

    @property
    def size(self) -> int:
        """Number of terms added or removed, over all fields."""
        return sum(len(d.added) + len(d.removed) for d in self.fields.values())

    def to_json(self) -> str:
        return json.dumps(
            {name: {"+": list(d.added), "-": list(d.removed)} for name, d in self.fields.items()},
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Delta:
        """Parse a log entry's delta, refusing anything that is not exactly one.

        Any field name is read (the writer may be configured with fields this process is not):
        a snapshot applies the fields it has and leaves the others out.
        """
        document = _json_object(raw, "delta")
        fields: dict[str, FieldDelta] = {}
        for name, change in document.items():
            if not isinstance(change, dict):
                raise SnapshotFormatError(f"delta of {name!r} is not an object")
            added, removed = change.get("+", []), change.get("-", [])
            if not _is_term_list(added) or not _is_term_list(removed):
                raise SnapshotFormatError(f"delta of {name!r} is not two lists of strings")
            fields[name] = FieldDelta(tuple(added), tuple(removed))
        return cls(fields)


@dataclass(frozen=True, slots=True, eq=False)
class Snapshot(Mapping[str, TermSet]):
    """An immutable vocabulary: one term set per field, read at one version of one database.

    A read-only mapping from field name to its :class:`TermSet`, so ``snapshot["projects"]``,
    ``"X" in snapshot["projects"]`` and comparing with the design document's dict of lists work
    without copying anything. Its fields are the keys of ``terms``, in order.
    """

    terms: Mapping[str, TermSet]
    version: int = 0
    identity: str = ""
    refreshed_at: float = field(default_factory=time.time)
    _encoded: dict[str, Any] = field(default_factory=dict, repr=False)
    """Per-object memo of encodings (the JSON body is computed once per version)."""

    @classmethod
    def empty(cls, fields: Iterable[str] = FIELDS) -> Snapshot:
        """A snapshot of ``fields`` that holds nothing and has no version (nothing loaded yet)."""
        return cls(terms=dict.fromkeys(fields, EMPTY_TERMS), refreshed_at=0.0)

    @classmethod
    def from_lists(
        cls,
        lists: Mapping[str, Iterable[str]],
        version: int,
        refreshed_at: float | None = None,
        identity: str = "",
        fields: Iterable[str] = FIELDS,
    ) -> Snapshot:
        """A snapshot of ``fields`` with the terms of ``lists`` (fields not given are empty),
        read at ``version``."""
        names = tuple(fields)
        unknown = set(lists) - set(names)
        if unknown:
            raise ValueError(f"unknown vocabulary fields: {sorted(unknown)}")
        return cls(
            terms={name: TermSet(lists.get(name, ())) for name in names},
            version=version,
            identity=identity,
            refreshed_at=time.time() if refreshed_at is None else refreshed_at,
        )

    @property
    def is_complete(self) -> bool:
        """True once a real state was loaded (version 0 is "nothing yet")."""
        return self.version > 0

    @property
    def fields(self) -> tuple[str, ...]:
        """The field names, in order (the design document's six, then configured ones)."""
        return tuple(self.terms)

    @property
    def versions(self) -> dict[str, int]:
        """Per-field versions (all fields of a snapshot are read at the same version)."""
        return dict.fromkeys(self.terms, self.version)

    def get(self, name: str, default: Any = EMPTY_TERMS) -> TermSet:
        return self.terms.get(name, default)

    def __getitem__(self, name: str) -> TermSet:
        return self.terms[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.terms)

    def __len__(self) -> int:
        return len(self.terms)

    __hash__ = object.__hash__

    def counts(self) -> dict[str, int]:
        return {name: len(terms) for name, terms in self.terms.items()}

    @property
    def size(self) -> int:
        return sum(len(terms) for terms in self.terms.values())

    def as_lists(self) -> dict[str, list[str]]:
        """The design document's data model: one sorted list per field (a copy: O(size), for
        callers that need lists; hot paths use the snapshot itself or :meth:`to_json`)."""
        return {name: list(terms.sorted()) for name, terms in self.terms.items()}

    def same_terms(self, other: Snapshot) -> bool:
        """Same fields with the same terms."""
        return self.fields == other.fields and all(
            terms == other.get(name) for name, terms in self.terms.items()
        )

    # --- deltas ------------------------------------------------------------------------------

    def apply(
        self,
        delta: Delta,
        version: int,
        refreshed_at: float | None = None,
        identity: str | None = None,
    ) -> Snapshot:
        """The snapshot after ``delta``; unchanged fields are shared, not copied. A field the
        snapshot does not have is left out (see :meth:`unknown_in`)."""
        terms = dict(self.terms)
        for name, change in delta.fields.items():
            if change and name in terms:
                terms[name] = self.get(name).changed(change.added, change.removed)
        return Snapshot(
            terms=terms,
            version=version,
            identity=self.identity if identity is None else identity,
            refreshed_at=time.time() if refreshed_at is None else refreshed_at,
        )

    def unknown_in(self, delta: Delta) -> list[str]:
        """The fields ``delta`` changes that this snapshot does not have (its writer was
        configured with other fields)."""
        return [name for name in delta.fields if name not in self.terms]

    def delta_to(self, other: Snapshot) -> Delta:
        """The delta that turns this snapshot's terms into ``other``'s (O(size): for resyncs)."""
        fields: dict[str, FieldDelta] = {}
        for name in other.fields:
            mine, theirs = self.get(name), other.get(name)
            if mine is theirs:
                continue
            added, removed = set_difference(theirs, mine)
            if added or removed:
                fields[name] = FieldDelta(added, removed)
        return Delta(fields)

    def settle(self, name: str, present: Iterable[str], absent: Iterable[str]) -> FieldDelta:
        """The change to ``name`` that makes ``present`` terms present and ``absent`` absent."""
        terms = self.get(name)
        return FieldDelta(
            tuple(sorted({t for t in present if t not in terms})),
            tuple(sorted({t for t in absent if t in terms})),
        )

    # --- JSON codec: the seed's ``vocabulary`` key and GET /api/vocabulary ------------------

    def meta(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "identity": self.identity,
            "field_versions": self.versions,
            "refreshed_at": self.refreshed_at,
        }

    async def to_json_in_steps(self) -> bytes:
        """The same bytes as :meth:`to_json`, with the event loop free between slices."""
        encoded = self._encoded.get("json")
        if encoded is None:
            arrays = {name: await terms.json_in_steps() for name, terms in self.terms.items()}
            encoded = self._encoded["json"] = self._document(arrays)
        assert isinstance(encoded, bytes)
        return encoded

    def to_json(self) -> bytes:
        """Meta first (cheap to peek at), then the fields' sorted lists; encoded once per object,
        and a field's array only where a change touched it (see :meth:`TermSet.to_json`)."""
        encoded = self._encoded.get("json")
        if encoded is None:
            arrays = {name: terms.to_json() for name, terms in self.terms.items()}
            encoded = self._encoded["json"] = self._document(arrays)
        assert isinstance(encoded, bytes)
        return encoded

    def _document(self, arrays: Mapping[str, bytes]) -> bytes:
        """``{"meta": {...}, "<field>": [...], ...}``: what ``json.dumps`` of it would give."""
        parts = [b'{"' + META_KEY.encode() + b'":', _dumps(self.meta()).encode()]
        for name, array in arrays.items():
            parts.append(b',"' + name.encode() + b'":')
            parts.append(array)
        parts.append(b"}")
        return b"".join(parts)

    def memo(self, key: str) -> Any:
        """A value memoised on this snapshot (one per version), or None."""
        return self._encoded.get(key)

    def remember(self, key: str, value: Any) -> Any:
        self._encoded[key] = value
        return value

    @classmethod
    def from_json(cls, raw: bytes | str, fields: Iterable[str] = FIELDS) -> Snapshot:
        """Parse a Redis value, refusing anything that is not exactly a snapshot of ``fields``
        (lists of other fields are left out)."""
        names = tuple(fields)
        document = _json_object(raw, "value")
        meta = document.get(META_KEY)
        if not isinstance(meta, dict):
            raise SnapshotFormatError(f"no {META_KEY!r} object")
        version = meta.get("version")
        refreshed_at = meta.get("refreshed_at")
        identity = meta.get("identity", "")
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise SnapshotFormatError("meta.version is not a version")
        if not _is_finite_number(refreshed_at):
            raise SnapshotFormatError("meta.refreshed_at is not a number")
        if not isinstance(identity, str):
            raise SnapshotFormatError("meta.identity is not a string")
        lists: dict[str, list[str]] = {}
        for name in names:
            values = document.get(name)
            if values is None:
                raise SnapshotFormatError(
                    f"no {name!r} list (was it written with another VOCABSYNC_SOURCES?)"
                )
            if not isinstance(values, list) or not _is_term_list(values):
                raise SnapshotFormatError(f"{name!r} is not a list of strings")
            lists[name] = values
        assert isinstance(refreshed_at, int | float)
        return cls.from_lists(lists, version, float(refreshed_at), identity, names)


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _json_object(raw: bytes | str, what: str) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SnapshotFormatError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise SnapshotFormatError(f"{what} is not a JSON object")
    return document


def _is_term_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_finite_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
