"""A word trie over the terms of one vocabulary field.

Each edge is a word id; a node knows which entry (term) ends there and which single entry, if any,
lies below it (so a partial name can be told unique or ambiguous in one look). Most nodes have a
single child (the tail of a long name), so those keep it in two flat arrays instead of a dict:
that is what keeps 100k terms well under the memory budget.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass

Hop = tuple[int, int, int, int]
"""A dropped word: (its word id, its node, the next word id, the next node)."""

SKIP_INDEX_FROM = 8
"""Children from which a node indexes its grandchildren for dropped-word lookups."""

NONE = -1
AMBIGUOUS = -2
_MANY = -2  # marker in ``_one_word``: the children are in ``_many[node]``


@dataclass(slots=True)
class Entry:
    """A term of the field, as words (its first reading), and the raw values spelled that way."""

    words: tuple[str, ...]
    values: list[str]
    letters: int


class Trie:
    """Append-only while built (single writer), read-only once published."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self._entry_ids: dict[tuple[str, ...], int] = {}
        self._one_word: array[int] | list[int] = [NONE]
        self._one_child: array[int] | list[int] = [NONE]
        self._many: dict[int, dict[int, int]] = {}
        self._terminal: array[int] | list[int] = [NONE]
        self._owner: array[int] | list[int] = [NONE]
        self._skip_index: dict[int, dict[int, list[Hop]]] = {}  # filled by readers, on demand
        self._depths: dict[int, int] = {}  # word id -> bit mask of the positions it holds
        self.first_words: dict[int, int] = {}
        """The first words of the terms: word id -> node."""
        self._first_by_initial: dict[str, list[tuple[str, int, int]]] = {}
        self._abbreviated_first: dict[str, list[tuple[int, int]]] = {}  # readers' memo

    # --- building ---------------------------------------------------------------------------

    def entry_for(self, words: tuple[str, ...], value: str) -> int:
        """The entry of a term spelled ``words``; a second spelling of it joins the same entry."""
        entry_id = self._entry_ids.get(words)
        if entry_id is None:
            entry_id = len(self.entries)
            self._entry_ids[words] = entry_id
            self.entries.append(Entry(words, [value], sum(len(w) for w in words)))
        elif value not in self.entries[entry_id].values:
            self.entries[entry_id].values.append(value)
        return entry_id

    def insert(self, path: tuple[int, ...], entry_id: int) -> None:
        node = 0
        owner = self._owner
        depths = self._depths
        for depth, word_id in enumerate(path):
            depths[word_id] = depths.get(word_id, 0) | (1 << depth)
            current = owner[node]
            if current == NONE:
                owner[node] = entry_id
            elif current != entry_id:
                owner[node] = AMBIGUOUS
            node = self._child_or_new(node, word_id)
        current = owner[node]
        owner[node] = entry_id if current in (NONE, entry_id) else AMBIGUOUS
        if self._terminal[node] == NONE:
            self._terminal[node] = entry_id

    def _child_or_new(self, node: int, word_id: int) -> int:
        found = self.child(node, word_id)
        if found != NONE:
            return found
        child = len(self._terminal)
        for column in (self._one_word, self._one_child, self._terminal, self._owner):
            column.append(NONE)
        single = self._one_word[node]
        if single == NONE:
            self._one_word[node] = word_id
            self._one_child[node] = child
        elif single == _MANY:
            self._many[node][word_id] = child
        else:
            self._many[node] = {single: self._one_child[node], word_id: child}
            self._one_word[node] = _MANY
            self._one_child[node] = NONE
        return child

    def freeze(self, words: list[str]) -> None:
        """Pack the node columns into machine-integer arrays (a quarter of the memory)."""
        self.first_words = dict(self.children(0))
        self._first_by_initial = {}
        for word_id, child in self.first_words.items():
            word = words[word_id]
            self._first_by_initial.setdefault(word[0], []).append((word, word_id, child))
        self._one_word = array("i", self._one_word)
        self._one_child = array("i", self._one_child)
        self._terminal = array("i", self._terminal)
        self._owner = array("i", self._owner)
        self._entry_ids = {}

    # --- reading ----------------------------------------------------------------------------

    @property
    def node_count(self) -> int:
        return len(self._terminal)

    def child(self, node: int, word_id: int) -> int:
        single = self._one_word[node]
        if single == word_id:
            return self._one_child[node]
        if single == _MANY:
            return self._many[node].get(word_id, NONE)
        return NONE

    def children(self, node: int) -> Iterator[tuple[int, int]]:
        """(word id, child) pairs below ``node``."""
        single = self._one_word[node]
        if single >= 0:
            yield single, self._one_child[node]
        elif single == _MANY:
            yield from self._many[node].items()

    def skips(self, node: int, wanted: frozenset[int]) -> list[Hop]:
        """(skipped word, its node, next word, next node) for words below a child of ``node``.

        How a dropped middle word is found: the child is the word left out, the grandchild the
        question word read next. ``wanted`` is small (the readings of one question word). A node
        with many children gets its grandchildren indexed by word on first use.
        """
        if self._one_word[node] == _MANY and len(self._many[node]) >= SKIP_INDEX_FROM:
            index = self._skip_index.get(node)
            if index is None:
                index = self._skip_index[node] = self._grandchildren(node)
            return [hop for target in wanted for hop in index.get(target, ())]
        out: list[Hop] = []
        one_word, one_child, many = self._one_word, self._one_child, self._many
        for word_id, child in self.children(node):
            below = one_word[child]
            if below >= 0:
                if below in wanted:
                    out.append((word_id, child, below, one_child[child]))
            elif below == _MANY:
                kids = many[child]
                for target in wanted:
                    grandchild = kids.get(target)
                    if grandchild is not None:
                        out.append((word_id, child, target, grandchild))
        return out

    def _grandchildren(self, node: int) -> dict[int, list[Hop]]:
        index: dict[int, list[Hop]] = {}
        for word_id, child in self.children(node):
            for below, grandchild in self.children(child):
                index.setdefault(below, []).append((word_id, child, below, grandchild))
        return index

    def abbreviated_first_words(
        self, short: str, is_abbreviation: Callable[[str, str], bool]
    ) -> list[tuple[int, int]]:
        """(word id, node) of the first words that ``short`` may abbreviate (memoised)."""
        found = self._abbreviated_first.get(short)
        if found is None:
            if len(self._abbreviated_first) >= 10_000:
                self._abbreviated_first.clear()
            found = [
                (word_id, child)
                for word, word_id, child in self._first_by_initial.get(short[0], ())
                if is_abbreviation(short, word)
            ]
            self._abbreviated_first[short] = found
        return found

    def holds_at(self, word_id: int, position: int) -> bool:
        """Whether some term of the field has this word at this position (0 = first word)."""
        return bool(self._depths.get(word_id, 0) >> position & 1)

    def has_children(self, node: int) -> bool:
        return self._one_word[node] != NONE

    def terminal(self, node: int) -> int:
        """The entry ending exactly at ``node``, or NONE."""
        return self._terminal[node]

    def owner(self, node: int) -> int:
        """The one entry at or below ``node``; NONE when there is none, AMBIGUOUS when several."""
        return self._owner[node]

    def walk(self, path: tuple[int, ...]) -> int:
        node = 0
        for word_id in path:
            node = self.child(node, word_id)
            if node == NONE:
                return NONE
        return node
