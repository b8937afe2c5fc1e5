"""A word trie over the terms of one vocabulary field, updated term by term.

Each edge is a word id. A node knows the entry (term) ending there and the single entry, if any,
below it (so a partial name can
be told unique or ambiguous in one look). Inserting or removing a path touches the nodes on it
and, to tell whether an ambiguous node became unique, a few of their children: the cost of a
change is the length of the term, not the size of the field.

Memory is what decides the layout at a million terms: nodes are rows of machine-integer columns,
and a node with a single child (the tail of a long name, most nodes) keeps it in two of those
columns instead of a dict. Entries are columns too (their value, word count, letters), not
objects. A node with nothing at or below it any more is freed; the next insert reuses it.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vocabsync.matching.lexicon import Lexicon

Hop = tuple[int, int, int, int]
"""A dropped word: (its word id, its node, the next word id, the next node)."""

SKIP_INDEX_FROM = 8
"""Children from which a node indexes its grandchildren for dropped-word lookups."""
MAX_DETOUR_FANOUT = 256
"""Children beyond which the search tries no detour (a dropped word, a guess) below a node, so
no grandchild index is kept for it either."""
_CHILD_BITS = 32  # a hop is stored as (skipped word id << 32 | child node)
_CHILD_MASK = (1 << _CHILD_BITS) - 1

NONE = -1
AMBIGUOUS = -2
_MANY = -2  # marker in ``_one_word``: the children are in ``_many[node]``
_DEPTH_BITS = 8  # positions are counted up to 255 words into a term
_MAX_DEPTH = (1 << _DEPTH_BITS) - 1

Values = str | tuple[str, ...]
"""The raw values of an entry: one string, or several spellings with the same words."""


class Trie:
    """The terms of one field. Single writer; readers must not run during a change (the index
    serialises them with a lock)."""

    def __init__(self, lexicon: Lexicon) -> None:
        self._lexicon = lexicon  # told when a word may have gone from this trie
        self._words = lexicon.words
        # Node columns (row 0 is the root, which always keeps its children in a dict).
        self._one_word = array("i", [_MANY])
        self._one_child = array("i", [NONE])
        self._terminal = array("i", [NONE])
        self._owner = array("i", [NONE])
        self._many: dict[int, dict[int, int]] = {0: {}}
        self._more_terminals: dict[int, list[int]] = {}  # further entries ending at a node
        self._free_nodes: list[int] = []
        # Entry columns.
        self._values: list[Values | None] = []
        self._entry_node = array("i")  # where the entry's own reading ends
        self._entry_length = array("i")  # words of that reading
        self._entry_letters = array("i")
        self._free_entries: list[int] = []
        self.entry_count = 0
        # (word id << 8 | position) -> nodes reached by that word at that depth (from 1).
        self._positions: dict[int, int] = {}
        self._deepest = 0  # the deepest position ever held (bounds :meth:`has_word`)
        self.first_words: dict[int, int] = self._many[0]
        """The first words of the terms: word id -> node (the root's children)."""
        self._first_by_initial: dict[str, dict[int, int]] = {}
        # Filled by readers on demand, dropped by writers where they change the trie:
        # node -> grandchild word -> hops through its children (word id << 32 | child node)
        self._skip_index: dict[int, dict[int, list[int]]] = {}
        self._abbreviated_first: dict[str, dict[str, list[tuple[int, int]]]] = {}
        self.touched = 0
        """Nodes visited by writes so far (the cost tests compare it across trie sizes)."""

    # --- entries ----------------------------------------------------------------------------

    def new_entry(self, value: str, length: int, letters: int) -> int:
        if self._free_entries:
            entry = self._free_entries.pop()
            self._values[entry] = value
            self._entry_node[entry] = NONE
            self._entry_length[entry] = length
            self._entry_letters[entry] = letters
        else:
            entry = len(self._values)
            self._values.append(value)
            self._entry_node.append(NONE)
            self._entry_length.append(length)
            self._entry_letters.append(letters)
        self.entry_count += 1
        return entry

    def values(self, entry: int) -> tuple[str, ...]:
        found = self._values[entry]
        if found is None:
            return ()
        return (found,) if isinstance(found, str) else found

    def add_value(self, entry: int, value: str) -> None:
        self._values[entry] = (*self.values(entry), value)

    def remove_value(self, entry: int, value: str) -> None:
        """Drop one spelling; the entry is freed with its last one (its paths must be gone)."""
        left = tuple(v for v in self.values(entry) if v != value)
        if left:
            self._values[entry] = left[0] if len(left) == 1 else left
            return
        self._values[entry] = None
        self._free_entries.append(entry)
        self.entry_count -= 1

    def entry_length(self, entry: int) -> int:
        return self._entry_length[entry]

    def entry_letters(self, entry: int) -> int:
        return self._entry_letters[entry]

    def own_entry(self, node: int) -> int:
        """The entry whose own (first) reading ends at ``node``, or NONE."""
        entry = self._terminal[node]
        if entry == NONE:
            return NONE
        if self._entry_node[entry] == node:
            return entry
        for other in self._more_terminals.get(node, ()):
            if self._entry_node[other] == node:
                return other
        return NONE

    def entries(self) -> Iterator[tuple[int, tuple[str, ...]]]:
        """(entry, values) of every entry (for a reload's comparison and for tests)."""
        for entry, found in enumerate(self._values):
            if found is not None:
                yield entry, ((found,) if isinstance(found, str) else found)

    # --- writing ----------------------------------------------------------------------------

    def insert(self, path: Sequence[int], entry: int, own: bool) -> int:
        """Add one reading of ``entry`` (``own``: its first reading, which identifies it).

        Returns the entry that already had this own reading (the same term spelled another way:
        the caller merges them), else NONE.
        """
        one_word, one_child = self._one_word, self._one_child
        owner = self._owner
        length = len(path)
        if not length:
            raise ValueError("a reading has at least one word")
        node = self.first_words.get(path[0], NONE)
        if node == NONE:
            parent, node, depth = NONE, 0, 0
        else:
            if owner[node] != entry:
                owner[node] = AMBIGUOUS
            parent, depth = 0, 1
        while depth < length:  # down the nodes that exist
            word_id = path[depth]
            single = one_word[node]
            if single == word_id:
                child = one_child[node]
            elif single == _MANY:
                child = self._many[node].get(word_id, NONE)
                if child == NONE:
                    break
            else:
                break
            if owner[child] != entry:
                owner[child] = AMBIGUOUS
            parent, node = node, child
            depth += 1
        if depth < length:  # the rest is new: a chain of one node per word
            positions = self._positions
            for at in range(depth or 1, length):
                key = path[at] << _DEPTH_BITS | (at if at < _MAX_DEPTH else _MAX_DEPTH)
                positions[key] = positions.get(key, 0) + 1
            if length > self._deepest:
                self._deepest = min(length - 1, _MAX_DEPTH)
            child, last = self._grow(node, path, depth, entry)
            if node == 0:
                self._first_word_added(path[0], child)
            if self._skip_index:  # the grandchild indexes above the new nodes gain hops
                if parent != NONE:
                    self._hop_added(parent, node, path[depth - 1], path[depth], child)
                if last != child:
                    second = self._one_child[child]
                    self._hop_added(node, child, path[depth], path[depth + 1], second)
            node = last
        self.touched += length + 1
        terminal = self._terminal
        if terminal[node] == NONE:
            terminal[node] = entry
            if own:
                self._entry_node[entry] = node
            return NONE
        other = NONE
        if own:
            other = self.own_entry(node)
            self._entry_node[entry] = node
        self._add_terminal(node, entry)
        return other

    def _grow(self, node: int, path: Sequence[int], start: int, entry: int) -> tuple[int, int]:
        """Hang new nodes for ``path[start:]`` below ``node``, one below the other, owned by
        ``entry``; returns the first and the last. Appended column by column when no freed node
        is waiting (the bulk of a build)."""
        if self._free_nodes:
            first = node = self._new_child(node, path[start])
            self._owner[node] = entry
            for word_id in path[start + 1 :]:
                node = self._new_child(node, word_id)
                self._owner[node] = entry
            return first, node
        one_word, one_child = self._one_word, self._one_child
        first = len(one_word)
        size = len(path) - start
        single = one_word[node]
        if single == _MANY:
            self._many[node][path[start]] = first
        elif single == NONE:
            one_word[node] = path[start]
            one_child[node] = first
        else:
            self._link(node, path[start], first)
        one_word.extend(path[start + 1 :])
        one_word.append(NONE)
        one_child.extend(range(first + 1, first + size))
        one_child.append(NONE)
        self._terminal.extend(_nones(size))
        self._owner.extend(array("i", (entry,)) * size)
        return first, first + size - 1

    def remove(self, path: Sequence[int], entry: int) -> None:
        """Take one reading of ``entry`` out (it must have been inserted)."""
        nodes = [0]
        node = 0
        for word_id in path:
            node = self.child(node, word_id)
            if node == NONE:
                raise KeyError(f"no path {tuple(path)} in the trie")
            nodes.append(node)
        self._remove_terminal(node, entry)
        one_word, terminal, owner = self._one_word, self._terminal, self._owner
        self.touched += len(nodes)
        for index in range(len(nodes) - 1, 0, -1):
            node = nodes[index]
            if one_word[node] == NONE and terminal[node] == NONE:  # nothing left at or below
                parent = nodes[index - 1]
                self._detach(parent, path[index - 1])
                if index >= 2 and self._skip_index:
                    self._hop_removed(nodes[index - 2], parent, path[index - 2], path[index - 1])
                self._free(node)
                if parent == 0:
                    self._first_word_removed(path[0])
                self._edge_removed(path[index - 1], index - 1)
            elif owner[node] == AMBIGUOUS:
                owner[node] = self._recount_owner(node)
            # owner == entry: every path left below is entry's, so it still owns the node

    def _edge_removed(self, word_id: int, depth: int) -> None:
        if depth:
            key = word_id << _DEPTH_BITS | (depth if depth < _MAX_DEPTH else _MAX_DEPTH)
            left = self._positions[key] - 1
            if left:
                self._positions[key] = left
                return
            del self._positions[key]
        self._lexicon.maybe_unused(word_id)

    def has_word(self, word_id: int) -> bool:
        """Whether some node of this trie hangs under ``word_id``."""
        if word_id in self.first_words:
            return True
        positions = self._positions
        key = word_id << _DEPTH_BITS
        return any(key | depth in positions for depth in range(1, self._deepest + 1))

    def _new_child(self, node: int, word_id: int) -> int:
        if self._free_nodes:
            child = self._free_nodes.pop()
        else:
            child = len(self._one_word)
            self._one_word.append(NONE)
            self._one_child.append(NONE)
            self._terminal.append(NONE)
            self._owner.append(NONE)
        self._link(node, word_id, child)
        return child

    def _link(self, node: int, word_id: int, child: int) -> None:
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

    def _detach(self, node: int, word_id: int) -> None:
        """Forget ``node``'s child under ``word_id`` (a dict of one goes back to the columns)."""
        if self._one_word[node] == word_id:
            self._one_word[node] = NONE
            self._one_child[node] = NONE
            return
        kids = self._many[node]
        del kids[word_id]
        if node != 0 and len(kids) == 1:
            ((single, child),) = kids.items()
            del self._many[node]
            self._one_word[node] = single
            self._one_child[node] = child

    def _free(self, node: int) -> None:
        self._one_word[node] = NONE
        self._one_child[node] = NONE
        self._terminal[node] = NONE
        self._owner[node] = NONE
        self._skip_index.pop(node, None)
        self._free_nodes.append(node)

    def _add_terminal(self, node: int, entry: int) -> None:
        current = self._terminal[node]
        if current == NONE:
            self._terminal[node] = entry
            return
        more = self._more_terminals.setdefault(node, [])
        if current != entry and self._rank(entry, node) < self._rank(current, node):
            self._terminal[node] = entry
            more.append(current)
        else:
            more.append(entry)

    def _remove_terminal(self, node: int, entry: int) -> None:
        more = self._more_terminals.get(node)
        if more is not None and entry in more:
            more.remove(entry)
        elif self._terminal[node] == entry:
            if more:
                best = min(more, key=lambda other: self._rank(other, node))
                more.remove(best)
                self._terminal[node] = best
            else:
                self._terminal[node] = NONE
        else:
            raise KeyError(f"entry {entry} does not end at node {node}")
        if more is not None and not more:
            del self._more_terminals[node]

    def _rank(self, entry: int, node: int) -> tuple[bool, str]:
        """Which of several entries ending at one node answers for it: the one spelled so
        (its own reading), then the smallest value (the same whatever the order of changes)."""
        return self._entry_node[entry] != node, min(self.values(entry))

    def _recount_owner(self, node: int) -> int:
        """The one entry at or below ``node`` now, or AMBIGUOUS. Stops at the second entry
        found: a node below which one entry lies has at most that entry's few readings below."""
        seen = NONE
        terminal = self._terminal[node]
        if terminal != NONE:
            seen = terminal
            for other in self._more_terminals.get(node, ()):
                if other != seen:
                    return AMBIGUOUS
        owner = self._owner
        for _, child in self.children(node):
            self.touched += 1
            below = owner[child]
            if below == AMBIGUOUS or (seen != NONE and below != seen):
                return AMBIGUOUS
            seen = below
        return seen

    def _hop_added(
        self, grandparent: int, parent: int, parent_word: int, word_id: int, child: int
    ) -> None:
        """``child`` hangs below ``parent`` now: list it in ``grandparent``'s index, if any."""
        index = self._skip_index.get(grandparent)
        if index is not None:
            if self.fanout(grandparent) > MAX_DETOUR_FANOUT:
                del self._skip_index[grandparent]  # no longer searched below: not kept
            else:
                index.setdefault(word_id, []).append(parent_word << _CHILD_BITS | parent)

    def _hop_removed(self, grandparent: int, parent: int, parent_word: int, word_id: int) -> None:
        index = self._skip_index.get(grandparent)
        if index is not None:
            hops = index[word_id]
            hops.remove(parent_word << _CHILD_BITS | parent)
            if not hops:
                del index[word_id]

    def _first_word_added(self, word_id: int, child: int) -> None:
        initial = self._words[word_id][:1]
        self._first_by_initial.setdefault(initial, {})[word_id] = child
        self._abbreviated_first.pop(initial, None)

    def _first_word_removed(self, word_id: int) -> None:
        initial = self._words[word_id][:1]
        same = self._first_by_initial[initial]
        del same[word_id]
        if not same:
            del self._first_by_initial[initial]
        self._abbreviated_first.pop(initial, None)

    # --- reading ----------------------------------------------------------------------------

    @property
    def node_count(self) -> int:
        """Nodes in use (the root included)."""
        return len(self._one_word) - len(self._free_nodes)

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
        if (
            self._one_word[node] == _MANY
            and SKIP_INDEX_FROM <= len(self._many[node]) <= MAX_DETOUR_FANOUT
        ):
            index = self._skip_index.get(node)
            if index is None:
                index = self._skip_index[node] = self._grandchildren(node)
            step = self.child
            return [
                (hop >> _CHILD_BITS, hop & _CHILD_MASK, target, step(hop & _CHILD_MASK, target))
                for target in wanted
                for hop in index.get(target, ())
            ]
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

    def _grandchildren(self, node: int) -> dict[int, list[int]]:
        """Grandchild word -> hops (skipped word << 32 | child), kept current by writes."""
        index: dict[int, list[int]] = {}
        for word_id, child in self.children(node):
            for below, _ in self.children(child):
                index.setdefault(below, []).append(word_id << _CHILD_BITS | child)
        return index

    def abbreviated_first_words(
        self, short: str, is_abbreviation: Callable[[str, str], bool]
    ) -> list[tuple[int, int]]:
        """(word id, node) of the first words that ``short`` may abbreviate (memoised)."""
        initial = short[:1]
        memo = self._abbreviated_first.get(initial)
        if memo is None:
            memo = self._abbreviated_first[initial] = {}
        found = memo.get(short)
        if found is None:
            if len(memo) >= 2_000:
                memo.clear()
            words = self._words
            found = memo[short] = [
                (word_id, child)
                for word_id, child in self._first_by_initial.get(initial, {}).items()
                if is_abbreviation(short, words[word_id])
            ]
        return found

    def holds_at(self, word_id: int, position: int) -> bool:
        """Whether some term of the field has this word at this position (0 = first word)."""
        if position == 0:
            return word_id in self.first_words
        return (word_id << _DEPTH_BITS | min(position, _MAX_DEPTH)) in self._positions

    def fanout(self, node: int) -> int:
        """How many children ``node`` has."""
        single = self._one_word[node]
        if single == _MANY:
            return len(self._many[node])
        return 0 if single == NONE else 1

    def has_children(self, node: int) -> bool:
        return self._one_word[node] != NONE

    def terminal(self, node: int) -> int:
        """The entry ending exactly at ``node``, or NONE."""
        return self._terminal[node]

    def owner(self, node: int) -> int:
        """The one entry at or below ``node``; NONE when there is none, AMBIGUOUS when several."""
        return self._owner[node]

    def walk(self, path: Sequence[int]) -> int:
        one_word, one_child, many = self._one_word, self._one_child, self._many
        node = 0
        for word_id in path:
            single = one_word[node]
            if single == word_id:
                node = one_child[node]
            elif single == _MANY:
                node = many[node].get(word_id, NONE)
                if node == NONE:
                    return NONE
            else:
                return NONE
        return node


@lru_cache(maxsize=64)
def _nones(size: int) -> array[int]:
    return array("i", (NONE,)) * size
