"""The words of a vocabulary, and every way a question word may stand for one of them.

Fuzzy work is confined to single words against this small set (thousands to tens of thousands
of distinct words even for a million terms), never to whole terms: a symmetric-deletion index
(SymSpell) finds the words within one edit of a question word in a handful of dictionary
lookups, and the trie walk then only follows those.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from rapidfuzz.distance import OSA

from vocabsync.matching.abbreviations import Abbreviations
from vocabsync.matching.common_words import is_common
from vocabsync.matching.text import Token

# Step kinds (bit flags): how a question word relates to the vocabulary word(s) it stands for.
EXACT = 1  # the same word after folding
ABBREVIATED = 2  # through the abbreviation table
INFLECTED = 4  # singular/plural of the word
TYPO = 8  # one edit away
WEAK = 16  # a typo reading of a word that is itself a real word ("travel" for "gravel")
SPACING = 32  # two question words joined, or one split ("river banks" / "riverbanks")


MEMO_SIZE = 20_000
"""Question words whose readings a lexicon remembers (cleared when full)."""


class Step(NamedTuple):
    """One reading of the question word at a position: the vocabulary words it stands for."""

    ids: tuple[int, ...]
    consumed: int  # question words used (2 when two were joined into one vocabulary word)
    edits: int
    kind: int


class Lexicon:
    """Word <-> id and a one-deletion index over the words long enough to carry a typo. A word
    comes with the first trie node under it and goes with the last, so adding or removing a term
    costs a few dictionary operations per new or dropped word."""

    def __init__(self, min_typo_length: int) -> None:
        self.words: list[str] = []  # id -> word ("" for a free id)
        self.ids: dict[str, int] = {}
        self.in_use: Callable[[int], bool] = lambda word_id: True
        """Whether some trie still has a node under the word (set by the layer)."""
        self._free: list[int] = []
        # Deleted form -> the id, or the ids, of the words it comes from (mostly one: no list).
        self._deletes: dict[str, int | list[int]] = {}
        self._min_typo_length = min_typo_length
        # Readings of question words seen lately, for the current set of words: a new word or a
        # dropped one replaces it (readers run under the index's lock, never during a change).
        self._memo: dict[str, tuple[Step, ...]] = {}
        self.writes = 0
        """Entries written so far (words, deleted forms): what the cost tests compare."""

    def __len__(self) -> int:
        return len(self.ids)

    def ids_for(self, words: Sequence[str]) -> list[int]:
        """The ids of ``words``, new words included: the caller inserts a path with them at
        once (a word lives while some trie node hangs under it)."""
        ids = self.ids
        found = list(map(ids.get, words))
        if None in found:
            for index, word in enumerate(words):
                if found[index] is None:
                    word_id = ids.get(word)
                    found[index] = self._new_word(word) if word_id is None else word_id
        return found  # type: ignore[return-value]

    def maybe_unused(self, word_id: int) -> None:
        """A trie lost its last node under this word at some depth: drop the word if no trie
        has one any more (a few lookups, only when a word leaves a position)."""
        if not self.in_use(word_id):
            self._drop(word_id)

    def _new_word(self, word: str) -> int:
        if self._free:
            word_id = self._free.pop()
            self.words[word_id] = word
        else:
            word_id = len(self.words)
            self.words.append(word)
        self.ids[word] = word_id
        if self._typo_tolerant(word):
            deletes = self._deletes
            for deleted in _deletions(word):
                bucket = deletes.get(deleted)
                if bucket is None:
                    deletes[deleted] = word_id
                elif isinstance(bucket, int):
                    deletes[deleted] = [bucket, word_id]
                else:
                    bucket.append(word_id)
        self._word_set_changed(word)
        return word_id

    def _drop(self, word_id: int) -> None:
        word = self.words[word_id]
        del self.ids[word]
        self.words[word_id] = ""
        self._free.append(word_id)
        if self._typo_tolerant(word):
            deletes = self._deletes
            for deleted in _deletions(word):
                bucket = deletes[deleted]
                if isinstance(bucket, int):
                    del deletes[deleted]
                else:
                    bucket.remove(word_id)
                    if len(bucket) == 1:
                        deletes[deleted] = bucket[0]
        self._word_set_changed(word)

    def lookup(self, words: Sequence[str]) -> tuple[int, ...] | None:
        """The ids of ``words`` when the lexicon has them all (no use is counted)."""
        found = tuple(map(self.ids.get, words))
        return None if None in found else found  # type: ignore[return-value]

    def _typo_tolerant(self, word: str) -> bool:
        return len(word) >= self._min_typo_length and word.isalpha()

    def _word_set_changed(self, word: str) -> None:
        self.writes += 1 + len(word)
        if self._memo:
            self._memo = {}

    # --- question side --------------------------------------------------------------------

    def near(self, word: str) -> list[int]:
        """Ids of the words exactly one edit (OSA: insert, delete, substitute, swap) away."""
        if len(word) < self._min_typo_length - 1 or not word.isalpha():
            return []
        found: set[int] = set()
        ids, deletes = self.ids, self._deletes
        bucket = deletes.get(word)  # the question dropped a letter
        if bucket is not None:
            found.update((bucket,) if isinstance(bucket, int) else bucket)
        for deleted in _deletions(word):
            same = ids.get(deleted)  # the question added a letter
            if same is not None and len(deleted) >= self._min_typo_length:
                found.add(same)
            bucket = deletes.get(deleted)  # substituted or swapped
            if bucket is not None:
                found.update((bucket,) if isinstance(bucket, int) else bucket)
        words = self.words
        return [i for i in found if OSA.distance(word, words[i], score_cutoff=1) == 1]

    def steps(self, tokens: Sequence[Token], abbreviations: Abbreviations) -> list[list[Step]]:
        """Every reading of every question word that leads to vocabulary words."""
        out: list[list[Step]] = []
        memo = self._memo
        last = len(tokens) - 1
        for position, token in enumerate(tokens):
            word = token.text
            found = memo.get(word)
            if found is None:
                if len(memo) >= MEMO_SIZE:
                    memo.clear()
                found = memo[word] = tuple(self._word_steps(word, abbreviations))
            steps = list(found)
            if position < last and token.word_end:  # "river banks" for "riverbanks"
                joined = self.ids.get(word + tokens[position + 1].text)
                if joined is not None:
                    steps.append(Step((joined,), 2, 0, SPACING))
            out.append(steps)
        return out

    def _word_steps(self, word: str, abbreviations: Abbreviations) -> Iterator[Step]:
        """The readings of one question word on its own (memoised: words recur a lot)."""
        ids = self.ids
        seen: set[tuple[int, ...]] = set()
        direct = self._readings(word, abbreviations)
        for expansion, kind in direct:
            seen.add(expansion)
            yield Step(expansion, 1, 0, kind)
        if word.isdigit():
            return
        for variant in _inflections(word):
            for expansion, kind in self._readings(variant, abbreviations):
                if expansion not in seen:
                    seen.add(expansion)
                    yield Step(expansion, 1, 0, kind | INFLECTED)
        if not direct and len(word) >= 4:  # "riverbanks" written as one word for two
            for cut in range(2, len(word) - 1):
                left, right = ids.get(word[:cut]), ids.get(word[cut:])
                if left is not None and right is not None:
                    yield Step((left, right), 1, 0, SPACING)
        weak = bool(direct) or is_common(word)
        for word_id in self.near(word):
            if (word_id,) not in seen:
                seen.add((word_id,))
                yield Step((word_id,), 1, 1, TYPO | (WEAK if weak else 0))
        for key in abbreviations.near(word):  # "Bgry" for "Brgy"
            for spelled in abbreviations.expand(key) or ():
                read = tuple(ids.get(part, -1) for part in spelled)
                if -1 not in read and read not in seen:
                    seen.add(read)
                    yield Step(read, 1, 1, TYPO | ABBREVIATED | (WEAK if weak else 0))

    def _readings(
        self, word: str, abbreviations: Abbreviations
    ) -> list[tuple[tuple[int, ...], int]]:
        """The word itself and its abbreviation expansions, as far as the vocabulary has them."""
        ids = self.ids
        out: list[tuple[tuple[int, ...], int]] = []
        own = ids.get(word)
        if own is not None:
            out.append(((own,), EXACT))
        for expansion in abbreviations.expand(word) or ():
            expanded = tuple(ids.get(part, -1) for part in expansion)
            if -1 not in expanded:
                out.append((expanded, ABBREVIATED))
        return out


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def _inflections(word: str) -> list[str]:
    """Singular and plural forms of an English word (regular ones)."""
    out: list[str] = []
    if word.endswith("ies") and len(word) > 4:
        out.append(word[:-3] + "y")
    elif word.endswith("es") and len(word) > 4:
        out += [word[:-2], word[:-1]]
    elif word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        out.append(word[:-1])
    if word.endswith("y") and len(word) > 3 and word[-2] not in "aeiou":
        out.append(word[:-1] + "ies")
    elif word.endswith(("s", "x", "z", "ch", "sh")):
        out.append(word + "es")
    else:
        out.append(word + "s")
    return out
