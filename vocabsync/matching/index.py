"""The matching index of one vocabulary, kept current change by change.

One structure (:class:`~vocabsync.matching.layer.Layer`) that adding or removing a term updates
in place, at the cost of indexing that term: no base, overlay or rebuild. Its single writer (the
maintainer's worker thread) and its readers take turns on a lock, the writer a chunk of at most
:data:`APPLY_CHUNK` terms at a time, so a reader waits at most a few milliseconds.

A change of up to :data:`APPLY_CHUNK` terms (nearly all of them) is applied in one turn, so an
answer reflects the version before it or the version after it. A bigger one (a bulk import) takes
several turns: its new terms go in hidden, one turn publishes the new version (new terms visible,
removed terms hidden), then its removed terms come out. Meanwhile every answer names only terms
of the version the index reports, and finds each of them by its full name; but a partial name or
a guess near an in-flight term may read it as already (or still) there: a partial name it shares
reads as ambiguous. That lasts as long as the bulk change is applied (about a second per 100k
terms).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Collection, Generator, Iterable, Iterator, Mapping, Sequence

from vocabsync.matching.abbreviations import Abbreviations
from vocabsync.matching.layer import Layer
from vocabsync.matching.model import Match
from vocabsync.matching.resolve import Found, as_written, closest, resolve
from vocabsync.matching.search import LayerSearch
from vocabsync.matching.settings import MatchSettings
from vocabsync.matching.text import Token, tokenize
from vocabsync.vocabulary import FIELDS, Snapshot, TermSet

APPLY_CHUNK = 128
"""Terms changed per turn on the lock (a few milliseconds of work)."""

BUILD_CHUNK = 256
"""Terms indexed between two yields of a build (which no reader sees until it is done)."""

Terms = Mapping[str, Iterable[str]]
"""Field name -> terms."""


class MatchIndex:
    """The index of vocabulary ``version``; :meth:`match` may be called from any thread."""

    def __init__(
        self,
        settings: MatchSettings,
        abbreviations: Abbreviations | None = None,
        *,
        version: int = 0,
        fields: Sequence[str] = FIELDS,
    ) -> None:
        self.settings = settings
        self.abbreviations = abbreviations or Abbreviations.build(settings.abbreviations)
        self.fields = tuple(fields)
        """The vocabulary's fields, in order: the entity types this index finds."""
        self.order = {name: index for index, name in enumerate(self.fields)}
        self.layer = Layer(self.abbreviations, settings.min_typo_length, self.fields)
        self.version = version
        self.lock = threading.Lock()
        # Terms of a change in flight: added but not yet published, removed but not yet gone.
        self._hidden: dict[str, set[str]] = {}
        self._dead: dict[str, set[str]] = {}

    @classmethod
    def build(
        cls,
        snapshot: Snapshot,
        settings: MatchSettings,
        abbreviations: Abbreviations | None = None,
    ) -> MatchIndex:
        """A full index of ``snapshot`` in one go (tests, benchmarks)."""
        return cls.from_terms(snapshot.version, snapshot.terms, settings, abbreviations)

    @classmethod
    def from_terms(
        cls,
        version: int,
        terms: Terms,
        settings: MatchSettings,
        abbreviations: Abbreviations | None = None,
    ) -> MatchIndex:
        index = cls(settings, abbreviations, version=version, fields=fields_of(terms))
        for _ in index.fill_steps(terms):
            pass
        return index

    @property
    def term_count(self) -> int:
        return self.layer.term_count

    @property
    def in_flight(self) -> int:
        """Terms of a change still being applied (only a bulk change has any)."""
        return sum(map(len, self._hidden.values())) + sum(map(len, self._dead.values()))

    # --- writing (the maintainer's worker thread only) -------------------------------------

    def fill_steps(self, terms: Terms) -> Generator[None, None, None]:
        """Index ``terms`` into this new, unpublished index, yielding every few hundred terms
        (no lock: no reader has the index yet). Each field's terms go in sorted: neighbours
        share their first words, so the nodes an insert walks are the ones the last one
        walked (a seventh faster at a million terms)."""
        add = self.layer.add
        count = 0
        for name in self.fields:
            for value in sorted(_any_order(terms.get(name, ()))):
                add(name, value)
                count += 1
                if count % BUILD_CHUNK == 0:
                    yield

    def apply_steps(
        self,
        version: int,
        added: Mapping[str, Collection[str]],
        removed: Mapping[str, Collection[str]],
    ) -> Generator[None, None, int]:
        """Apply a change (field -> terms added / removed), yielding between turns on the lock;
        returns the number of terms it touched. A term both added and removed ends up present."""
        removals = _without(removed, added)
        size = sum(map(len, removals.values())) + sum(len(v) for v in added.values())
        layer = self.layer
        if size <= APPLY_CHUNK:
            with self.lock:
                for field, value in self._pairs(removals):
                    layer.remove(field, value)
                for field, value in self._pairs(added):
                    layer.add(field, value)
                self.version = version
            return size
        hidden: dict[str, set[str]] = {name: set() for name in added}
        with self.lock:
            self._hidden = hidden
        for chunk in _chunks(self._pairs(added)):
            with self.lock:
                for field, value in chunk:
                    if layer.add(field, value):
                        hidden[field].add(value)
            yield
        dead = {name: set(values) for name, values in removals.items()}
        with self.lock:  # publish: the new terms appear, the removed ones disappear, at once
            self._hidden, self._dead, self.version = {}, dead, version
        yield
        for chunk in _chunks(self._pairs(removals)):
            with self.lock:
                for field, value in chunk:
                    layer.remove(field, value)
                    dead[field].discard(value)
            yield
        with self.lock:
            self._dead = {}
        return size

    def apply(
        self,
        version: int,
        added: Mapping[str, Collection[str]],
        removed: Mapping[str, Collection[str]],
    ) -> int:
        """:meth:`apply_steps` in one go (tests, benchmarks)."""
        steps = self.apply_steps(version, added, removed)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                touched: int = done.value
                return touched

    def present(self) -> dict[str, set[str]]:
        """The terms indexed now, per field (the worker's view; for a reload's comparison)."""
        return {name: set(self.layer.terms(name)) for name in self.fields}

    # --- matching ---------------------------------------------------------------------------

    def match(
        self, text: str, fields: Sequence[str] | None = None, limit: int | None = None
    ) -> list[Match]:
        """The entities named in ``text``, sorted by position (README, "Entity matching")."""
        return self.match_versioned(text, fields, limit)[0]

    def match_versioned(
        self, text: str, fields: Sequence[str] | None = None, limit: int | None = None
    ) -> tuple[list[Match], int]:
        """The matches and the vocabulary version they reflect."""
        tokens = tokenize(text)
        wanted = list(self.fields) if fields is None else [f for f in self.fields if f in fields]
        with self.lock:
            found = self._search(tokens, wanted) if tokens else []
            version = self.version
        chosen = resolve([as_written(f, text) for f in found], self.order)
        if limit is not None and len(chosen) > limit:
            chosen = sorted(chosen, key=lambda f: (-f.score, f.start))[:limit]
        chosen.sort(key=lambda f: (f.start, f.end, self.order[f.field]))
        matches = [
            Match(f.field, f.value, text[f.start : f.end], f.start, f.end, f.score) for f in chosen
        ]
        return matches, version

    def _search(self, tokens: list[Token], fields: list[str]) -> list[Found]:
        layer = self.layer
        steps = layer.lexicon.steps(tokens, self.abbreviations)
        candidates = LayerSearch(layer, tokens, steps, self.settings).run(fields)
        hidden, dead = self._hidden, self._dead
        out: list[Found] = []
        for candidate in candidates:
            values = layer.tries[candidate.field].values(candidate.entry)
            if hidden or dead:
                unseen = hidden.get(candidate.field, ()), dead.get(candidate.field, ())
                values = tuple(v for v in values if v not in unseen[0] and v not in unseen[1])
                if not values:
                    continue
            start = tokens[candidate.first].start
            end = tokens[candidate.last].end
            value = (
                values[0]
                if len(values) == 1
                else closest(values, tokens, candidate.first, candidate.last)
            )
            out.append(Found(candidate.field, value, start, end, candidate.score, candidate.exact))
        return out

    def _pairs(self, terms: Mapping[str, Iterable[str]]) -> Iterator[tuple[str, str]]:
        """(field, term) for this index's fields, in field order (other keys are not
        vocabulary)."""
        for name in self.fields:
            for value in terms.get(name, ()):
                yield name, value


def fields_of(terms: Terms) -> tuple[str, ...]:
    """The fields of a vocabulary given as field -> terms: the design document's six, then any
    other (configured) fields it has, in its order."""
    return FIELDS + tuple(name for name in terms if name not in FIELDS)


def _without(
    removed: Mapping[str, Collection[str]], added: Mapping[str, Collection[str]]
) -> dict[str, Collection[str]]:
    out: dict[str, Collection[str]] = {}
    for name, values in removed.items():
        if not values:
            continue
        also_added = added.get(name)
        out[name] = set(values).difference(also_added) if also_added else values
    return out


def _chunks(pairs: Iterator[tuple[str, str]]) -> Iterator[list[tuple[str, str]]]:
    while chunk := list(itertools.islice(pairs, APPLY_CHUNK)):
        yield chunk


def _any_order(terms: Iterable[str]) -> Iterable[str]:
    """A vocabulary field without asking it for its sorted order (which it would then keep up
    to date on every change: the index sorts its own copy)."""
    return terms.unordered() if isinstance(terms, TermSet) else terms
