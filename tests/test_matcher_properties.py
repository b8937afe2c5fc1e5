"""Properties of matching, with generated vocabularies and sentences (hypothesis).

Filler words are built mostly from letters no vocabulary word has (c, h, l, n, s, w, y), so no
filler word is a typo, abbreviation or inflection of a vocabulary word: every match must be the
planted term.
"""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from vocabsync.matching import MatchIndex, MatchSettings
from vocabsync.matching.trie import AMBIGUOUS
from vocabsync.vocabulary import FIELDS, Snapshot

TERM_LETTERS = "bdfgkmprtvz" + "aeiou"
FILLER_WORDS = (
    "how", "much", "was", "the", "cash", "we", "had", "on", "this", "why", "so", "you", "will",
    "show", "us", "now", "sell", "which", "chess", "yes",
)  # fmt: skip
NOISE = ("", " ", ",", ", ", ".", " - ", "_", '"', "'", " / ", "  ", "\t", "(", ")")
SEPARATORS = (" ", ",", ", ", ".", ". ", " - ", "-", "_", '"', " / ", "  ", "\t", " (", ") ")
"""Between two words of a term (an apostrophe inside a word keeps it one word: "Luke's")."""

term_words = st.text(alphabet=TERM_LETTERS, min_size=4, max_size=9).filter(
    lambda w: any(c in "aeiou" for c in w) and any(c not in "aeiou" for c in w)
)
terms = st.lists(term_words, min_size=1, max_size=4).map(" ".join)
vocabularies = st.dictionaries(
    st.sampled_from(FIELDS), st.lists(terms, min_size=1, max_size=6, unique=True), min_size=1
)
fillers = st.lists(st.sampled_from(FILLER_WORDS), max_size=6).map(" ".join)


def build(vocabulary: dict[str, list[str]]) -> MatchIndex:
    lists = {name: vocabulary.get(name, []) for name in FIELDS}
    return MatchIndex.build(
        Snapshot.from_lists(lists, version=1),
        MatchSettings(_env_file=None),  # type: ignore[call-arg]
    )


@st.composite
def noisy_surface(draw: st.DrawFn, term: str) -> str:
    """``term`` with random case, and random punctuation/spacing between its words."""
    out = []
    for index, word in enumerate(term.split(" ")):
        if index:
            out.append(draw(st.sampled_from(SEPARATORS)))
        out.append("".join(c.upper() if draw(st.booleans()) else c for c in word))
    return "".join(out)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vocabularies, fillers, fillers, st.data())
def test_a_planted_term_is_found_with_its_field_and_span(
    vocabulary: dict[str, list[str]], before: str, after: str, data: st.DataObject
) -> None:
    index = build(vocabulary)
    field = data.draw(st.sampled_from(sorted(vocabulary)))
    term = data.draw(st.sampled_from(vocabulary[field]))
    surface = data.draw(noisy_surface(term))
    lead = data.draw(st.sampled_from(("", " ", ' "', " '", " (")))
    trail = data.draw(st.sampled_from(("", " ", '" ', "' ", "? ", ", ")))
    prefix = f"{before} {lead.lstrip()}" if before else lead.lstrip()
    text = f"{prefix}{surface}{trail}" + (f" {after}" if after else "")
    start = len(prefix)
    end = start + len(surface)
    matches = index.match(text)
    assert all(text[m.start : m.end] == m.text for m in matches)
    planted = [m for m in matches if (m.start, m.end) == (start, end) and m.field == field]
    assert [m.value for m in planted] == [term], (text, matches)
    assert planted[0].score == 1.0


@hsettings(max_examples=150, deadline=None)
@given(vocabularies, st.lists(st.sampled_from(FILLER_WORDS), min_size=1, max_size=20), st.data())
def test_text_without_vocabulary_words_matches_nothing(
    vocabulary: dict[str, list[str]], words: list[str], data: st.DataObject
) -> None:
    separators = data.draw(
        st.lists(st.sampled_from(NOISE), min_size=len(words), max_size=len(words))
    )
    text = "".join(w + (s or " ") for w, s in zip(words, separators, strict=True))
    assert build(vocabulary).match(text) == []


@hsettings(max_examples=200, deadline=None)
@given(vocabularies, st.text(max_size=200), st.data())
def test_offsets_always_slice_the_input(
    vocabulary: dict[str, list[str]], noise: str, data: st.DataObject
) -> None:
    """Whatever the text (any unicode, terms or not), matches point at their own words."""
    field = data.draw(st.sampled_from(sorted(vocabulary)))
    term = data.draw(st.sampled_from(vocabulary[field]))
    cut = data.draw(st.integers(0, len(noise)))
    text = noise[:cut] + " " + term.upper() + " " + noise[cut:]
    for match in build(vocabulary).match(text):
        assert text[match.start : match.end] == match.text
        assert 0 <= match.start < match.end <= len(text)
        assert 0 < match.score <= 1


# --- changes applied in place -------------------------------------------------------------

CHANGE_WORDS = (
    "devt", "dvpt", "bario", "kobe", "tapir", "vida", "marko", "ii", "2", "st", "saint",
    "street", "barko", "kobi", "tapirs", "the", "vidas",
)  # fmt: skip
"""Words that make terms share prefixes, spell one term two ways ("Devt"/"Dvpt", "II"/"2"), read
one term two ways ("St": street or saint) and end two terms at one trie node."""

change_terms = st.lists(st.sampled_from(CHANGE_WORDS), min_size=1, max_size=5).map(" ".join)
change_vocabularies = st.dictionaries(
    st.sampled_from(FIELDS), st.lists(change_terms, max_size=8, unique=True), max_size=4
)


def describe(index: MatchIndex) -> dict[str, Any]:
    """Everything the index holds, by words and values instead of ids (which depend on the
    order of changes): the nodes of each trie by path, the entries, the lexicon."""
    layer = index.layer
    words = layer.lexicon.words
    out: dict[str, Any] = {}
    for name, trie in layer.tries.items():
        nodes: dict[tuple[str, ...], Any] = {}
        stack: list[tuple[int, tuple[str, ...]]] = [(0, ())]
        while stack:
            node, path = stack.pop()
            owner = trie.owner(node)
            ending = [trie.terminal(node), *trie._more_terminals.get(node, ())]
            nodes[path] = (
                sorted(trie.values(trie.terminal(node))) if trie.terminal(node) >= 0 else None,
                sorted(tuple(sorted(trie.values(e))) for e in ending if e >= 0),
                "ambiguous" if owner == AMBIGUOUS else sorted(trie.values(owner)) if path else 0,
            )
            for word_id, child in trie.children(node):
                stack.append((child, (*path, words[word_id])))
        entries = sorted(
            (sorted(values), trie.entry_length(entry), trie.entry_letters(entry))
            for entry, values in trie.entries()
        )
        positions = sorted((words[key >> 8], key & 255, n) for key, n in trie._positions.items())
        initials = {
            initial: sorted(words[w] for w in same)
            for initial, same in trie._first_by_initial.items()
        }
        out[name] = (nodes, entries, positions, initials, trie.node_count, trie.entry_count)
    lexicon = layer.lexicon
    deletes = {
        key: sorted(words[i] for i in ((ids,) if isinstance(ids, int) else ids))
        for key, ids in lexicon._deletes.items()
    }
    out["lexicon"] = (sorted(lexicon.ids), deletes, layer.term_count)
    return out


def index_of(vocabulary: dict[str, list[str]], version: int = 1) -> MatchIndex:
    return MatchIndex.from_terms(version, vocabulary, MatchSettings(_env_file=None))  # type: ignore[call-arg]


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(change_vocabularies, st.data())
def test_any_sequence_of_deltas_leaves_what_a_fresh_build_of_the_result_holds(
    start: dict[str, list[str]], data: st.DataObject
) -> None:
    """load_full, then deltas (adds, removes, re-adds, spellings of one term, terms sharing
    prefixes), with questions between them: the index holds exactly, node for node, what a
    build of the final vocabulary holds, and answers every question the same."""
    index = index_of(start)
    current = {name: set(start.get(name, ())) for name in FIELDS}
    with patch("vocabsync.matching.trie.SKIP_INDEX_FROM", 1):  # index every node's grandchildren
        for version in range(2, data.draw(st.integers(2, 9)) + 1):
            added: dict[str, set[str]] = {}
            removed: dict[str, set[str]] = {}
            for name in data.draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True)):
                present = sorted(current[name])
                gone = data.draw(st.lists(st.sampled_from(present), unique=True)) if present else []
                new = data.draw(st.lists(change_terms, max_size=4, unique=True))
                removed[name] = set(gone) - set(new)
                added[name] = {term for term in new if term not in current[name]}
                current[name] = (current[name] - removed[name]) | added[name]
            index.apply(version, added, removed)
            assert index.version == version
            asked = data.draw(st.lists(st.sampled_from(CHANGE_WORDS), min_size=2, max_size=6))
            index.match(" ".join(asked))  # readers fill their memos and skip indexes
    final = {name: sorted(values) for name, values in current.items()}
    fresh = index_of(final)
    assert describe(index) == describe(fresh)
    for trie in index.layer.tries.values():  # the skip indexes readers built were kept current
        for node, hops in trie._skip_index.items():
            fresh_hops = trie._grandchildren(node)
            assert {w: sorted(h) for w, h in hops.items()} == {
                w: sorted(h) for w, h in fresh_hops.items()
            }, node
    every = {term for values in final.values() for term in values} | set(CHANGE_WORDS)
    for term in sorted(every):
        for text in (f"how was {term} this week", f"{term} and kobe vida", term[:-1]):
            assert index.match(text) == fresh.match(text), text


@hsettings(max_examples=60, deadline=None)
@given(change_vocabularies, change_vocabularies)
def test_a_bulk_change_is_published_at_once(
    before: dict[str, list[str]], after: dict[str, list[str]]
) -> None:
    """A change bigger than one turn on the lock (here: one term per turn) goes in hidden and is
    published in one turn. Between turns, every answer names only terms of the version the index
    reports (the one before the change until it is published, the one after from then on), and
    every such term is found by its own name. At the end the index is what a build of the
    result is."""
    old = {name: set(before.get(name, ())) for name in FIELDS}
    new = {name: set(after.get(name, ())) for name in FIELDS}
    questions = sorted({term for values in (*old.values(), *new.values()) for term in values})
    index = index_of({name: sorted(values) for name, values in old.items()})
    added = {name: new[name] - old[name] for name in FIELDS}
    removed = {name: old[name] - new[name] for name in FIELDS}
    with patch("vocabsync.matching.index.APPLY_CHUNK", 1):
        for _ in index.apply_steps(2, added, removed):
            visible = new if index.version == 2 else old
            for question in questions:
                answer = index.match(question)
                assert all(m.value in visible[m.field] for m in answer), (question, answer)
                for name in FIELDS:
                    if question in visible[name]:
                        assert any(m.value == question for m in answer if m.field == name)
    assert index.version == 2
    assert describe(index) == describe(index_of({n: sorted(v) for n, v in new.items()}))
