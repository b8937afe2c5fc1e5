"""The searchable form of a vocabulary: one lexicon and a trie per field, updated term by term.

Adding a term reads it (its words, and its abbreviation readings), counts its words in the
lexicon and inserts each reading into the field's trie; removing it undoes exactly that. Both cost
what the term's own words cost, whatever the size of the vocabulary, and a term added then
removed leaves the structure as if it had never been there (so a long-running index answers as a
fresh one would).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from vocabsync.matching.abbreviations import Abbreviations
from vocabsync.matching.lexicon import Lexicon
from vocabsync.matching.text import words
from vocabsync.matching.trie import NONE, Trie

MAX_READINGS = 4
"""Readings indexed per term when abbreviations are ambiguous ("St." street or saint)."""


class Layer:
    """Lexicon + one trie per field (the vocabulary's fields: each is an entity type). Single
    writer; readers are kept out during a change by the index's lock."""

    def __init__(
        self, abbreviations: Abbreviations, min_typo_length: int, fields: Iterable[str]
    ) -> None:
        self.abbreviations = abbreviations
        self.lexicon = Lexicon(min_typo_length)
        self.tries: dict[str, Trie] = {name: Trie(self.lexicon) for name in fields}
        tries = tuple(self.tries.values())
        self.lexicon.in_use = lambda word_id: any(trie.has_word(word_id) for trie in tries)
        self.term_count = 0

    def add(self, field: str, value: str) -> bool:
        """Index ``value`` in ``field``; False when it is there already (or has no words)."""
        variants = readings(value, self.abbreviations)
        if not variants:
            return False
        trie = self.tries[field]
        lexicon = self.lexicon
        own = variants[0]
        path = lexicon.ids_for(own)
        entry = trie.new_entry(value, len(own), sum(map(len, own)))
        other = trie.insert(path, entry, own=True)
        if other != NONE:  # another spelling of a term we have ("Phase II", "Phase 2")
            trie.remove(path, entry)
            trie.remove_value(entry, value)
            if value in trie.values(other):
                return False
            trie.add_value(other, value)
            entry = other
            trie.insert(path, entry, own=False)
        if len(variants) > 1:
            for variant in variants[1:]:
                trie.insert(lexicon.ids_for(variant), entry, own=False)
        self.term_count += 1
        return True

    def remove(self, field: str, value: str) -> bool:
        """Take ``value`` out of ``field``; False when it is not there."""
        trie = self.tries[field]
        variants = readings(value, self.abbreviations)
        if not variants:
            return False
        entry = self._own_entry(trie, variants[0])
        if entry == NONE or value not in trie.values(entry):
            return False
        paths: list[Sequence[int]] = []
        for variant in variants:
            path = self.lexicon.lookup(variant)
            assert path is not None  # inserted with the value, so every word is counted
            paths.append(path)
            trie.remove(path, entry)
        trie.remove_value(entry, value)
        self.term_count -= 1
        return True

    def contains(self, field: str, value: str) -> bool:
        variants = readings(value, self.abbreviations)
        if not variants:
            return False
        trie = self.tries[field]
        entry = self._own_entry(trie, variants[0])
        return entry != NONE and value in trie.values(entry)

    def terms(self, field: str) -> Iterator[str]:
        """The values held for ``field`` (for a reload's comparison, recovery and tests)."""
        for _, values in self.tries[field].entries():
            yield from values

    def entry_words(self, field: str, entry: int) -> tuple[str, ...]:
        """The words of an entry's own reading (recomputed: entries keep no word lists)."""
        values = self.tries[field].values(entry)
        return readings(values[0], self.abbreviations)[0] if values else ()

    def node_count(self) -> int:
        return sum(trie.node_count for trie in self.tries.values())

    def touched(self) -> int:
        """Trie nodes and lexicon words written so far (what a change costs, in operations)."""
        return sum(trie.touched for trie in self.tries.values()) + self.lexicon.writes

    def _own_entry(self, trie: Trie, own: tuple[str, ...]) -> int:
        path = self.lexicon.lookup(own)
        if path is None:
            return NONE
        node = trie.walk(path)
        return NONE if node == NONE else trie.own_entry(node)


def readings(value: str, abbreviations: Abbreviations) -> list[tuple[str, ...]]:
    """The word sequences a term may be written as, its own spelling's reading first."""
    folded = words(value)
    if not folded:
        return []
    if abbreviations.any_of(folded):
        return abbreviations.readings(folded, MAX_READINGS)
    return [tuple(folded)]
