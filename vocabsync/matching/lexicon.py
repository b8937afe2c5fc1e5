"""The words of a vocabulary, and every way a question word may stand for one of them.

Fuzzy work is confined to single words against this small set (a few thousand distinct words even
for 100k terms), never to whole terms: a symmetric-deletion index (SymSpell) finds the words
within one edit of a question word in a handful of dictionary lookups, and the trie walk then
only follows those.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
    """Word <-> id, and a one-deletion index over the words long enough to carry a typo."""

    def __init__(self, min_typo_length: int) -> None:
        self.words: list[str] = []
        self.ids: dict[str, int] = {}
        self._deletes: dict[str, list[int]] = {}
        self._min_typo_length = min_typo_length
        # Readings of question words seen lately. Filled only once the lexicon is complete (by
        # readers); a plain dict, whose single get/set are atomic, so no lock is needed.
        self._memo: dict[str, tuple[Step, ...]] = {}

    def __len__(self) -> int:
        return len(self.words)

    def intern(self, word: str) -> int:
        found = self.ids.get(word)
        if found is not None:
            return found
        word_id = len(self.words)
        self.words.append(word)
        self.ids[word] = word_id
        if len(word) >= self._min_typo_length and word.isalpha():
            for deleted in _deletions(word):
                bucket = self._deletes.get(deleted)
                if bucket is None:
                    self._deletes[deleted] = [word_id]
                elif bucket[-1] != word_id:
                    bucket.append(word_id)
        return word_id

    # --- question side --------------------------------------------------------------------

    def near(self, word: str) -> list[int]:
        """Ids of the words exactly one edit (OSA: insert, delete, substitute, swap) away."""
        if len(word) < self._min_typo_length - 1 or not word.isalpha():
            return []
        found: set[int] = set()
        ids, deletes = self.ids, self._deletes
        bucket = deletes.get(word)  # the question dropped a letter
        if bucket:
            found.update(bucket)
        for deleted in _deletions(word):
            same = ids.get(deleted)  # the question added a letter
            if same is not None and len(deleted) >= self._min_typo_length:
                found.add(same)
            bucket = deletes.get(deleted)  # substituted or swapped
            if bucket:
                found.update(bucket)
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
