"""Finding the terms of the index in a question: a walk of each field's trie from each word.

From every question word that can begin a term, the walk follows the readings of the next words
(exact, abbreviated, inflected, typo, joined/split) down the trie. Where no reading continues, it
tries what people do to long names: a generic abbreviation ("Mkt" for "Market"), two typos in a
long word, a dropped middle word. Every term end it reaches, and every node below which a single
term lies (a unique partial name), is a candidate with a score; the index then resolves overlaps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz.distance import OSA

from vocabsync.matching.common_words import is_common
from vocabsync.matching.layer import Layer
from vocabsync.matching.lexicon import ABBREVIATED, EXACT, INFLECTED, SPACING, TYPO, WEAK, Step
from vocabsync.matching.settings import MatchSettings
from vocabsync.matching.text import Token
from vocabsync.matching.trie import MAX_DETOUR_FANOUT, NONE, Trie

# Score penalties (an exact match scores 1.0).
PENALTY_ABBREVIATED = 0.02
PENALTY_SPACING = 0.03
PENALTY_INFLECTED = 0.05
PENALTY_TYPO = 0.1  # per edit
PENALTY_WEAK = 0.05  # the typo reading of a real word
PENALTY_SHAPE = 0.12  # an abbreviation not in the table ("Mkt"): a little less sure than a typo
PENALTY_SKIP = 0.15  # a dropped middle word
PENALTY_PREFIX = 0.2  # a partial name, plus the share of words left out:
PENALTY_PREFIX_MISSING = 0.2

MAX_SHAPE_ABBREVIATIONS = 2
# Detours are tried only where a name goes on in at most MAX_DETOUR_FANOUT ways: among
# thousands of continuations ("Expenses - <any supplier> ...") a guessed word is more often wrong
# than right (and ambiguous ones are dropped anyway), and looking at each costs milliseconds.
MAX_GUESSES = 16
"""A guess (abbreviation, two typos) that fits more words than this where it stands is no
evidence: "Aug" fits hundreds of place names beginning with A; none is followed."""
CONNECTORS = frozenset({"of", "and", "the", "de", "del", "dela", "la", "at", "in", "on", "for"})
GENERIC_TAIL = frozenset(
    {"city", "philippines", "province", "municipality", "town", "proper", "metro", "manila"}
)
"""Words a place name goes without: "Marikina" names "Marikina City" / "Marikina, Philippines"."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A term found at question words ``first`` .. ``last`` (inclusive)."""

    field: str
    entry: int
    first: int
    last: int
    score: float
    exact: bool


@dataclass(slots=True)
class _State:
    node: int
    pos: int
    depth: int
    edits: int
    penalty: float
    solid: int  # question words read without a typo or guessed abbreviation
    weak: bool
    shapes: int  # guessed abbreviations
    loose: int  # ... of which not written with a period
    skipped: bool
    exact: bool
    path: tuple[int, ...]
    inflected: bool = False  # some word read as its singular/plural

    def moved(self, node: int, pos: int, word_ids: tuple[int, ...]) -> _State:
        """A copy one step further (cheaper than dataclasses.replace on the hot path)."""
        return _State(
            node,
            pos,
            self.depth + len(word_ids),
            self.edits,
            self.penalty,
            self.solid,
            self.weak,
            self.shapes,
            self.loose,
            self.skipped,
            self.exact,
            self.path + word_ids,
            self.inflected,
        )


class LayerSearch:
    """Search the layer for one question (the per-question readings are computed once)."""

    def __init__(
        self,
        layer: Layer,
        tokens: Sequence[Token],
        steps: list[list[Step]],
        settings: MatchSettings,
    ) -> None:
        self.layer = layer
        self.tokens = tokens
        self.steps = steps
        self.settings = settings
        self.words = layer.lexicon.words

    def run(self, fields: Sequence[str]) -> list[Candidate]:
        out: list[Candidate] = []
        tokens = self.tokens
        starts = [
            (i, self._may_abbreviate(token.text))
            for i, token in enumerate(tokens)
            if token.word_start
        ]
        starts = [(i, shape) for i, shape in starts if shape or self.steps[i]]
        for field_name in fields:
            trie = self.layer.tries.get(field_name)
            if trie is None:
                continue
            for start, shape in starts:
                stack = self._first_words(trie, start, shape)
                if stack:
                    self._walk(trie, field_name, start, stack, out)
        return out

    def _may_abbreviate(self, token: str) -> bool:
        """A short non-word may be an abbreviation that the table does not know."""
        return (
            2 <= len(token) <= 8
            and token.isalpha()
            and token not in self.layer.lexicon.ids
            and not is_common(token)
        )

    def _first_words(self, trie: Trie, start: int, shape: bool) -> list[_State]:
        """The states after reading the first word of a term at ``start`` (often none)."""
        stack: list[_State] = []
        root: _State | None = None
        first = trie.first_words
        for step in self.steps[start]:
            if step.ids[0] not in first:
                continue
            child = _follow(trie, 0, step.ids)
            if child != NONE and step.edits <= self.settings.typo_budget_max:
                root = root or _State(0, start, 0, 0, 0.0, 0, False, 0, 0, False, True, ())
                stack.append(self._advance(root, child, step, step.edits))
        if shape:  # "Const. of ..." for "Construction of ..."
            token = self.tokens[start]
            found = trie.abbreviated_first_words(token.text, _is_abbreviation)
            if len(found) <= MAX_GUESSES:
                for word_id, child in found:
                    root = root or _State(0, start, 0, 0, 0.0, 0, False, 0, 0, False, True, ())
                    stack.append(_shaped(root.moved(child, start + 1, (word_id,)), token))
        return stack

    def _walk(
        self, trie: Trie, field_name: str, start: int, stack: list[_State], out: list[Candidate]
    ) -> None:
        budget_max = self.settings.typo_budget_max
        n = len(self.tokens)
        while stack:
            state = stack.pop()
            node, pos = state.node, state.pos
            self._emit(trie, field_name, start, state, out)
            if pos >= n:
                continue
            advanced = False
            for step in self.steps[pos]:
                child = _follow(trie, node, step.ids)
                if child == NONE:
                    continue
                edits = state.edits + step.edits
                if edits > budget_max:
                    continue
                advanced = True
                stack.append(self._advance(state, child, step, edits))
            if trie.has_children(node):
                self._detours(trie, state, stack, guesses=not advanced)

    def _advance(self, state: _State, child: int, step: Step, edits: int) -> _State:
        kind = step.kind
        penalty = state.penalty
        if kind & TYPO:
            penalty += PENALTY_TYPO * step.edits + (PENALTY_WEAK if kind & WEAK else 0.0)
        if kind & ABBREVIATED:
            penalty += PENALTY_ABBREVIATED
        if kind & INFLECTED:
            penalty += PENALTY_INFLECTED
            moved_inflected = True
        else:
            moved_inflected = state.inflected
        if kind & SPACING:
            penalty += PENALTY_SPACING
        moved = state.moved(child, state.pos + step.consumed, step.ids)
        moved.edits = edits
        moved.penalty = penalty
        if not kind & TYPO:
            moved.solid += 1
        if kind & WEAK:
            moved.weak = True
        if kind != EXACT:
            moved.exact = False
        moved.inflected = moved_inflected
        return moved

    def _detours(self, trie: Trie, state: _State, stack: list[_State], guesses: bool) -> None:
        """A dropped middle word; and when no reading continues the term (``guesses``), a
        guessed abbreviation or two typos in a long word."""
        if trie.fanout(state.node) > MAX_DETOUR_FANOUT:
            return
        token = self.tokens[state.pos]
        text = token.text
        words = self.words
        shape_ok = guesses and state.shapes < MAX_SHAPE_ABBREVIATIONS and self._may_abbreviate(text)
        two_typos_ok = (
            guesses
            and state.edits + 2 <= self.settings.typo_budget_max
            and len(text) >= 6
            and text.isalpha()
        )
        if guesses and (shape_ok or two_typos_ok):
            guessed: list[_State] = []
            for word_id, child in trie.children(state.node):
                word = words[word_id]
                if shape_ok and word[0] == text[0] and _is_abbreviation(text, word):
                    guessed.append(_shaped(state.moved(child, state.pos + 1, (word_id,)), token))
                elif (
                    two_typos_ok
                    and len(word) >= 8
                    and abs(len(word) - len(text)) <= 2
                    and OSA.distance(text, word, score_cutoff=2) == 2
                ):
                    typo = state.moved(child, state.pos + 1, (word_id,))
                    typo.edits += 2
                    typo.penalty += 2 * PENALTY_TYPO
                    typo.exact = False
                    guessed.append(typo)
            if len(guessed) <= MAX_GUESSES:
                stack += guessed
        if state.skipped:
            return
        steps = [step for step in self.steps[state.pos] if not step.kind & TYPO]
        if not steps:
            return
        for word_id, child, target, grandchild in trie.skips(
            state.node, frozenset(step.ids[0] for step in steps)
        ):
            skipped = state.moved(child, state.pos, (word_id,))
            skipped.penalty += PENALTY_SKIP
            skipped.skipped = True
            skipped.exact = False
            for step in steps:
                if step.ids[0] == target:
                    node = _follow(trie, grandchild, step.ids[1:])
                    if node != NONE:
                        stack.append(self._advance(skipped, node, step, state.edits))

    def _emit(
        self, trie: Trie, field_name: str, start: int, state: _State, out: list[Candidate]
    ) -> None:
        tokens = self.tokens
        last = state.pos - 1
        if not tokens[last].word_end:
            return
        settings = self.settings
        entry_id = trie.terminal(state.node)
        if entry_id != NONE:
            if self._acceptable(state, trie.entry_length(entry_id), trie.entry_letters(entry_id)):
                out.append(
                    Candidate(
                        field_name,
                        entry_id,
                        start,
                        last,
                        round(max(0.05, 1.0 - state.penalty), 3),
                        state.exact,
                    )
                )
            return
        entry_id = trie.owner(state.node)
        if entry_id < 0 or state.skipped or state.edits > 1:
            return
        total = trie.entry_length(entry_id)
        depth = state.depth
        if depth >= total or self.words[state.path[-1]] in CONNECTORS:
            return
        if depth < settings.prefix_min_words and not self._short_prefix(
            state, field_name, entry_id
        ):
            return
        # A partial name is weaker evidence than a whole one: written as in the name (no plural:
        # "the two dump trucks" is not "Dump Truck Rental"), and made of everyday words only when
        # capitalised like a name ("Site Equipment", not "the site equipment").
        if state.weak or (state.edits and state.solid < 2) or state.shapes or state.inflected:
            return
        if all(is_common(self.words[word_id]) for word_id in state.path) and not all(
            token.capital for token in tokens[start : state.pos]
        ):
            return
        if self._named_otherwise(trie, state):
            return
        penalty = state.penalty + PENALTY_PREFIX + PENALTY_PREFIX_MISSING * (total - depth) / total
        out.append(
            Candidate(
                field_name,
                entry_id,
                start,
                last,
                round(max(0.05, 1.0 - penalty), 3),
                False,
            )
        )

    def _named_otherwise(self, trie: Trie, state: _State) -> bool:
        """The question goes on with a word that names go on with here, but not this one's:
        "Antipolo Hillside Road Widening" is not a partial "Antipolo Hillside Bridge ..."."""
        if state.pos >= len(self.tokens):
            return False
        for step in self.steps[state.pos]:
            word_id = step.ids[0]
            if (
                not step.kind & TYPO
                and trie.holds_at(word_id, state.depth)
                and not is_common(self.words[word_id])
            ):
                return True
        return False

    def _acceptable(self, state: _State, term_words: int, letters: int) -> bool:
        settings = self.settings
        if state.edits > settings.typo_budget(letters):
            return False
        if state.edits:
            if term_words == 1:
                return letters >= settings.min_single_word_typo_length and not state.weak
            if state.solid < 1:
                return False
        if state.skipped and term_words < 4:
            return False
        # A guessed abbreviation or a dropped word needs words read as written around it: two,
        # or one when every guessed abbreviation was written as one ("Emerg. Lumber").
        if state.skipped or state.loose:
            return state.solid >= 2
        return state.solid >= 1 or not state.shapes

    def _short_prefix(self, state: _State, field_name: str, entry_id: int) -> bool:
        """A shorter partial name is fine when all it leaves out is "City", "Philippines"..."""
        if not state.exact:
            return False
        term_words = self.layer.entry_words(field_name, entry_id)
        if not all(w in GENERIC_TAIL for w in term_words[state.depth :]):
            return False
        word = self.words[state.path[-1]]
        return len(word) >= 4 and word.isalpha() and not is_common(word)


def _shaped(state: _State, token: Token) -> _State:
    """``state`` having read ``token`` as a guessed abbreviation of the last word."""
    state.penalty += PENALTY_SHAPE
    state.shapes += 1
    if not token.dotted:
        state.loose += 1
    state.exact = False
    return state


def _follow(trie: Trie, node: int, ids: tuple[int, ...]) -> int:
    for word_id in ids:
        node = trie.child(node, word_id)
        if node == NONE:
            return NONE
    return node


def _is_abbreviation(short: str, word: str) -> bool:
    """``short`` is ``word`` shortened: same first letter, its letters in order, a third gone."""
    if len(word) < len(short) + 2 or len(word) < 4 or len(short) > 0.7 * len(word):
        return False
    position = 1
    for ch in short[1:]:
        position = word.find(ch, position) + 1
        if position == 0:
            return False
    return True
