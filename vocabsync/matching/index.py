"""A matching index for one snapshot version: a base layer, an overlay of changes, tombstones.

The base is built from some earlier snapshot; the terms added since then live in a small overlay
layer and the terms removed since then in a tombstone set. Together they answer exactly as an
index built from the current snapshot would (up to one documented corner: a partial name that a
removed term made ambiguous stays ambiguous until the base is rebuilt). Instances are immutable:
the matcher swaps a whole new one in, so a request always sees one consistent version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from rapidfuzz.distance import Levenshtein

from vocabsync.matching.abbreviations import Abbreviations
from vocabsync.matching.layer import Layer
from vocabsync.matching.model import Match
from vocabsync.matching.search import Candidate, LayerSearch
from vocabsync.matching.settings import MatchSettings
from vocabsync.matching.text import Token, tokenize, words
from vocabsync.matching.trie import AMBIGUOUS, NONE
from vocabsync.vocabulary import FIELDS, Snapshot

_FIELD_ORDER = {name: index for index, name in enumerate(FIELDS)}


def snapshot_terms(snapshot: Snapshot) -> list[tuple[str, str]]:
    return [(name, value) for name in FIELDS for value in snapshot.get(name)]


@dataclass(frozen=True, slots=True)
class _Found:
    field: str
    value: str
    start: int
    end: int
    score: float
    exact: bool


class MatchIndex:
    """Immutable: base + overlay - tombstones, for snapshot ``version``."""

    def __init__(
        self,
        base: Layer,
        *,
        version: int,
        settings: MatchSettings,
        abbreviations: Abbreviations,
        overlay: Layer | None = None,
        added: Mapping[str, frozenset[str]] | None = None,
        removed: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        self.base = base
        self.overlay = overlay
        self.version = version
        self.settings = settings
        self.abbreviations = abbreviations
        self.added: Mapping[str, frozenset[str]] = added or {}
        self.removed: Mapping[str, frozenset[str]] = removed or {}

    @classmethod
    def build(
        cls,
        snapshot: Snapshot,
        settings: MatchSettings,
        abbreviations: Abbreviations | None = None,
    ) -> MatchIndex:
        """A full index of ``snapshot`` in one go (tests, benchmarks, the first build)."""
        table = abbreviations or Abbreviations.build(settings.abbreviations)
        base = Layer.build(snapshot_terms(snapshot), table, settings.min_typo_length)
        return cls(base, version=snapshot.version, settings=settings, abbreviations=table)

    @property
    def overlay_size(self) -> int:
        return sum(len(v) for v in self.added.values()) + sum(len(v) for v in self.removed.values())

    def with_version(self, version: int) -> MatchIndex:
        """The same index for a newer snapshot that holds the same terms."""
        return MatchIndex(
            self.base,
            version=version,
            settings=self.settings,
            abbreviations=self.abbreviations,
            overlay=self.overlay,
            added=self.added,
            removed=self.removed,
        )

    def with_changes(
        self,
        version: int,
        added: Mapping[str, frozenset[str]],
        removed: Mapping[str, frozenset[str]],
    ) -> MatchIndex:
        """The same base with a new overlay: ``added``/``removed`` are relative to the base."""
        overlay_terms = [(name, value) for name in FIELDS for value in sorted(added.get(name, ()))]
        overlay = (
            Layer.build(overlay_terms, self.abbreviations, self.settings.min_typo_length)
            if overlay_terms
            else None
        )
        return MatchIndex(
            self.base,
            version=version,
            settings=self.settings,
            abbreviations=self.abbreviations,
            overlay=overlay,
            added={k: v for k, v in added.items() if v},
            removed={k: v for k, v in removed.items() if v},
        )

    # --- matching ---------------------------------------------------------------------------

    def match(
        self, text: str, fields: Sequence[str] | None = None, limit: int | None = None
    ) -> list[Match]:
        """The entities named in ``text``, sorted by position (README, "Entity matching")."""
        tokens = tokenize(text)
        if not tokens:
            return []
        wanted = list(FIELDS) if fields is None else [f for f in FIELDS if f in set(fields)]
        found = self._search(self.base, tokens, wanted, text, self.overlay)
        if self.overlay is not None:
            found += self._search(self.overlay, tokens, wanted, text, self.base)
        chosen = _resolve([_as_written(f, text) for f in found])
        if limit is not None and len(chosen) > limit:
            chosen = sorted(chosen, key=lambda f: (-f.score, f.start))[:limit]
        chosen.sort(key=lambda f: (f.start, f.end, _FIELD_ORDER[f.field]))
        return [
            Match(f.field, f.value, text[f.start : f.end], f.start, f.end, f.score) for f in chosen
        ]

    def _search(
        self,
        layer: Layer,
        tokens: list[Token],
        fields: list[str],
        text: str,
        other: Layer | None,
    ) -> list[_Found]:
        steps = layer.lexicon.steps(tokens, self.abbreviations)
        candidates = LayerSearch(layer, tokens, steps, self.settings).run(fields)
        is_base = layer is self.base
        out: list[_Found] = []
        for candidate in candidates:
            trie = layer.tries[candidate.field]
            entry = trie.entries[candidate.entry]
            values = entry.values
            if is_base:
                dead = self.removed.get(candidate.field)
                if dead:
                    values = [v for v in values if v not in dead]
                    if not values:
                        continue
            if candidate.prefix_path is not None and not self._prefix_unique_elsewhere(
                layer, candidate, other
            ):
                continue
            start = tokens[candidate.first].start
            end = tokens[candidate.last].end
            value = values[0] if len(values) == 1 else _closest(values, tokens, candidate)
            out.append(_Found(candidate.field, value, start, end, candidate.score, candidate.exact))
        return out

    def _prefix_unique_elsewhere(
        self, layer: Layer, candidate: Candidate, other: Layer | None
    ) -> bool:
        """A partial name unique in its layer must not also begin a live term of the other."""
        if other is None:
            return True
        assert candidate.prefix_path is not None
        path_words = [layer.lexicon.words[i] for i in candidate.prefix_path]
        ids = [other.lexicon.ids.get(word, NONE) for word in path_words]
        trie = other.tries.get(candidate.field)
        if trie is None or NONE in ids:
            return True
        node = trie.walk(tuple(ids))
        if node == NONE:
            return True
        owner = trie.owner(node)
        if owner == AMBIGUOUS:
            return False
        if owner == NONE:
            return True
        if other is self.base:  # the base's term may have been removed since
            dead = self.removed.get(candidate.field, frozenset())
            return all(v in dead for v in trie.entries[owner].values)
        return False


def _closest(values: Iterable[str], tokens: list[Token], candidate: Candidate) -> str:
    """Of several spellings of one term ("Phase II", "Phase 2"), the one written most alike."""
    said = " ".join(t.text for t in tokens[candidate.first : candidate.last + 1])
    return min(sorted(values), key=lambda value: Levenshtein.distance(said, " ".join(words(value))))


def _as_written(found: _Found, text: str) -> _Found:
    """A term written exactly as stored (but for case, accents, spacing and punctuation) is an
    exact match and scores 1.0, even when it was found through its abbreviation reading
    ("Govt" in the question for the term "Govt")."""
    if found.score < 1.0 and words(text[found.start : found.end]) == words(found.value):
        return replace(found, score=1.0, exact=True)
    return found


def _resolve(found: list[_Found]) -> list[_Found]:
    """Drop guesses that tie, then keep the longest, then best-scoring, of overlapping matches.

    The same words in several fields (a category in both lists) yield one match per field.
    """
    best: dict[tuple[str, str, int, int], _Found] = {}
    for item in found:
        key = (item.field, item.value, item.start, item.end)
        kept = best.get(key)
        if kept is None or item.score > kept.score:
            best[key] = item
    by_place: dict[tuple[str, int, int, float], list[_Found]] = {}
    for item in best.values():
        by_place.setdefault((item.field, item.start, item.end, item.score), []).append(item)
    unambiguous = [
        items[0]
        for items in by_place.values()
        if len(items) == 1 or any(item.exact for item in items)
    ]
    unambiguous.sort(key=lambda f: (-(f.end - f.start), -f.score, f.start, _FIELD_ORDER[f.field]))
    chosen: list[_Found] = []
    for item in unambiguous:
        clash = False
        for kept in chosen:
            if item.start < kept.end and kept.start < item.end:
                same_words = (kept.start, kept.end, kept.score) == (
                    item.start,
                    item.end,
                    item.score,
                )
                if not (same_words and kept.field != item.field):
                    clash = True
                    break
        if not clash:
            chosen.append(item)
    return chosen
