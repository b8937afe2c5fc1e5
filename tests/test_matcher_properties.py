"""Properties of matching, with generated vocabularies and sentences (hypothesis).

Filler words are built mostly from letters no vocabulary word has (c, h, l, n, s, w, y), so no
filler word is a typo, abbreviation or inflection of a vocabulary word: every match must be the
planted term.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from vocabsync.matching import MatchIndex, MatchSettings
from vocabsync.matching.changes import Delta
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


@hsettings(max_examples=60, deadline=None)
@given(vocabularies, vocabularies, st.data())
def test_an_overlay_answers_whole_names_like_a_fresh_build(
    before: dict[str, list[str]], after: dict[str, list[str]], data: st.DataObject
) -> None:
    """Base(before) + the difference to ``after`` finds exactly the terms of ``after``."""
    old = Snapshot.from_lists({n: before.get(n, []) for n in FIELDS}, version=1)
    new = Snapshot.from_lists({n: after.get(n, []) for n in FIELDS}, version=2)
    delta = Delta.between(old, new)
    added, removed = delta.frozen()
    incremental = build(before).with_changes(2, added, removed)
    fresh = build(after)
    for name in FIELDS:
        for term in {*before.get(name, []), *after.get(name, [])}:
            text = f"how was {term} this week"
            wanted = {(m.field, m.value) for m in fresh.match(text) if m.score == 1.0}
            got = {(m.field, m.value) for m in incremental.match(text) if m.score == 1.0}
            assert got == wanted, (term, name)
            assert ((name, term) in got) == (term in after.get(name, []))
