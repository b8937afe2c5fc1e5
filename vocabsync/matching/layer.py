"""One searchable layer: a lexicon and a trie per field, built from (field, term) pairs.

The base index and the small overlay of recent additions are both layers. Building is a generator
that yields every few hundred terms, so the worker thread can pause a long build to apply a fresh
change first (and let the event loop have the GIL).
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Iterable

from vocabsync.matching.abbreviations import Abbreviations
from vocabsync.matching.lexicon import Lexicon
from vocabsync.matching.text import words
from vocabsync.matching.trie import Trie

MAX_READINGS = 4
"""Readings indexed per term when abbreviations are ambiguous ("St." street or saint)."""

BUILD_CHUNK = 200
"""Terms inserted between two yields of a build."""


class Layer:
    """Lexicon + one trie per field; read-only once built."""

    def __init__(self, lexicon: Lexicon, tries: dict[str, Trie], term_count: int) -> None:
        self.lexicon = lexicon
        self.tries = tries
        self.term_count = term_count

    @classmethod
    def build(
        cls, terms: Iterable[tuple[str, str]], abbreviations: Abbreviations, min_typo_length: int
    ) -> Layer:
        """Build in one go (small layers, tests)."""
        steps = build_steps(terms, abbreviations, min_typo_length)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                layer: Layer = done.value
                return layer

    def node_count(self) -> int:
        return sum(trie.node_count for trie in self.tries.values())


def readings(value: str, abbreviations: Abbreviations) -> list[tuple[str, ...]]:
    """The word sequences a term may be written as, its own spelling's reading first."""
    folded = words(value)
    if not any(word in abbreviations for word in folded):
        return [tuple(folded)] if folded else []
    options: list[list[tuple[str, ...]]] = []
    for word in folded:
        expansions = abbreviations.expand(word)
        options.append(list(expansions) if expansions else [(word,)])
    out: list[tuple[str, ...]] = []
    for combination in itertools.islice(itertools.product(*options), MAX_READINGS):
        out.append(tuple(part for group in combination for part in group))
    return out


def build_steps(
    terms: Iterable[tuple[str, str]], abbreviations: Abbreviations, min_typo_length: int
) -> Generator[None, None, Layer]:
    """Build a layer, yielding every ``BUILD_CHUNK`` terms; the generator returns the layer."""
    lexicon = Lexicon(min_typo_length)
    tries: dict[str, Trie] = {}
    intern = lexicon.intern
    count = 0
    for field_name, value in terms:
        variants = readings(value, abbreviations)
        if not variants:
            continue
        trie = tries.get(field_name)
        if trie is None:
            trie = tries[field_name] = Trie()
        entry_id = trie.entry_for(variants[0], value)
        for variant in variants:
            trie.insert(tuple(intern(word) for word in variant), entry_id)
        count += 1
        if count % BUILD_CHUNK == 0:
            yield
    for trie in tries.values():
        trie.freeze(lexicon.words)
    return Layer(lexicon, tries, count)
