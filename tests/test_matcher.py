"""Entity matching on an index, without I/O: what it recognises, what it refuses, the shape."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from vocabsync.matching import Abbreviations, Match, MatchIndex, MatchSettings
from vocabsync.matching.text import tokenize
from vocabsync.vocabulary import FIELDS, Snapshot

VOCABULARY: dict[str, list[str]] = {
    "projects": [
        "Marikina Riverbanks Development Phase 2",
        "Marikina Flood Control Phase 1",
        "Marikina Flood Control Phase 2",
        "Pasig Bridge Rehabilitation",
        "Sto. Niño Barangay Hall Construction",
        "Quezon City School Building Package A",
        "Bayanihan Center",
        "Taguig Road Widening",
    ],
    "project_locations": ["Marikina City", "Pasig", "Bay", "Brgy. San Roque, Antipolo"],
    "expense_files": ["Expenses_Q1_2024.xlsx", "Expenses_Q2_2024.xlsx"],
    "cashflow_files": ["CashFlow_March_2024.csv"],
    "expense_categories": ["Diesel", "Equipment Rental", "Gravel", "Site Diesel"],
    "cashflow_categories": ["Diesel", "Progress Billing"],
}


def settings(**values: Any) -> MatchSettings:
    return MatchSettings(_env_file=None, **values)  # type: ignore[call-arg]


def index_of(vocabulary: Mapping[str, Sequence[str]] = VOCABULARY, **values: Any) -> MatchIndex:
    lists = {name: list(vocabulary.get(name, ())) for name in FIELDS}
    return MatchIndex.build(Snapshot.from_lists(lists, version=7), settings(**values))


INDEX = index_of()


def found(text: str, index: MatchIndex = INDEX, **kwargs: Any) -> list[tuple[str, str, str]]:
    return [(m.field, m.value, m.text) for m in index.match(text, **kwargs)]


def values(text: str, index: MatchIndex = INDEX) -> set[str]:
    return {m.value for m in index.match(text)}


def projects(text: str, index: MatchIndex = INDEX) -> set[str]:
    return {m.value for m in index.match(text, fields=["projects"])}


# --- normalisation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "MARIKINA FLOOD CONTROL PHASE 1",
        "marikina  flood   control phase 1",
        "marikina-flood-control, phase 1",
        '"Marikina Flood Control Phase 1"',
        "'marikina flood control' phase 1",
        "Marikina\tFlood\nControl Phase 1",
        "Marikina_Flood_Control_Phase_1",
    ],
)
def test_case_punctuation_quotes_and_spacing_do_not_matter(text: str) -> None:
    assert values(f"status of {text} please") == {"Marikina Flood Control Phase 1"}


def test_accents_and_abbreviation_dots() -> None:
    for text in ("Sto. Nino Barangay Hall Construction", "santo niño barangay hall construction"):
        assert values(text) == {"Sto. Niño Barangay Hall Construction"}


def test_file_names_match_when_written_as_words() -> None:
    assert found("open expenses q1 2024 xlsx") == [
        ("expense_files", "Expenses_Q1_2024.xlsx", "expenses q1 2024 xlsx")
    ]
    assert values("open Expenses_Q1_2024.xlsx") == {"Expenses_Q1_2024.xlsx"}


def test_whole_words_only() -> None:
    assert values("the Bayanihan Center budget") == {"Bayanihan Center"}
    assert values("Bayanihan spirit") == set()  # "Bay" is not inside "Bayanihan"
    assert values("by the bay") == {"Bay"}
    assert values("Pasigueño food") == set()


def test_nothing_in_an_entity_free_question() -> None:
    for text in (
        "how much did we spend last month?",
        "what is the travel budget for the new office",
        "show me the overdue invoices from our suppliers",
        "who approved the purchase order and when",
    ):
        assert found(text) == [], text


def test_everyday_words_are_not_read_as_typos_of_terms() -> None:
    assert values("travel expenses") == set()  # not "Gravel"
    assert values("diesel and travel") == {"Diesel"}


# --- typos --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typo",
    [
        "Marikina Floood Control Phase 1",  # insertion
        "Marikina Flod Control Phase 1",  # deletion
        "Marikina Flood Contrel Phase 1",  # substitution
        "Marikina Flood Cnotrol Phase 1",  # transposition
    ],
)
def test_one_typo_per_term(typo: str) -> None:
    [match] = INDEX.match(f"status of {typo}")
    assert match.value == "Marikina Flood Control Phase 1"
    assert match.text == typo
    assert 0 < match.score < 1


def test_one_word_term_with_a_typo() -> None:
    [match] = [m for m in INDEX.match("deisel") if m.field == "expense_categories"]
    assert match.value == "Diesel"


def test_two_typos_in_a_short_term_are_too_many() -> None:
    assert values("Equipmant Rentel") == set()


def test_typos_can_be_turned_off() -> None:
    strict = index_of(max_typos=0)
    assert projects("Marikina Flood Contrel Phase 1", strict) == set()
    assert projects("Marikina Flood Control Phase 1", strict) == {"Marikina Flood Control Phase 1"}


def test_numbers_are_never_typos() -> None:
    assert projects("Marikina Flood Control Phase 3") == set()


# --- partial names ------------------------------------------------------------------------


def test_unique_prefix_names_its_term() -> None:
    [match] = INDEX.match("how much diesel on marikina riverbanks so far", fields=["projects"])
    assert (match.value, match.text) == (
        "Marikina Riverbanks Development Phase 2",
        "marikina riverbanks",
    )
    assert match.score < 0.9


def test_ambiguous_prefix_names_nothing() -> None:
    assert projects("marikina flood control") == set()  # Phase 1 or Phase 2?
    assert values("expenses q") == set()


def test_partial_name_that_goes_on_differently_names_nothing() -> None:
    assert projects("pasig bridge status") == {"Pasig Bridge Rehabilitation"}
    # "Widening" continues names at that position, just not this one: another project is meant.
    assert projects("pasig bridge widening") == set()


def test_place_name_without_city() -> None:
    assert found("projects in Marikina") == [("project_locations", "Marikina City", "Marikina")]


# --- abbreviations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Marikina Riverbanks Dev Ph 2", "Marikina Riverbanks Development Phase 2"),
        ("Marikina Riverbanks Dev. Ph.2", "Marikina Riverbanks Development Phase 2"),
        ("Pasig Bridge Rehab", "Pasig Bridge Rehabilitation"),
        ("Sto Nino Brgy Hall Const.", "Sto. Niño Barangay Hall Construction"),
        ("Santo Niño Bgy. Hall Const", "Sto. Niño Barangay Hall Construction"),
        ("QC School Bldg Pkg A", "Quezon City School Building Package A"),
        ("Brgy San Roque Antipolo", "Brgy. San Roque, Antipolo"),
        ("Barangay San Roque, Antipolo", "Brgy. San Roque, Antipolo"),
        ("Equip. Rental", "Equipment Rental"),
    ],
)
def test_domain_abbreviations(text: str, value: str) -> None:
    assert value in values(f"what about {text}?")


def test_abbreviations_are_extendable_and_removable() -> None:
    table = Abbreviations.build({"MRB": "Marikina Riverbanks", "Rehab": []})
    snapshot = Snapshot.from_lists({n: VOCABULARY[n] for n in FIELDS}, version=1)
    index = MatchIndex.build(snapshot, settings(), table)
    assert values("MRB Development Phase 2", index) == {"Marikina Riverbanks Development Phase 2"}
    assert table.expand("rehab") is None
    assert "rehab" not in table
    with pytest.raises(ValueError, match="one word"):
        Abbreviations.build({"Q C": "Quezon City"})


def test_abbreviations_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOCABSYNC_MATCH_ABBREVIATIONS", '{"Pkg": ["Package"], "Hsg": "Housing"}')
    monkeypatch.setenv("VOCABSYNC_MATCH_MAX_TYPOS", "0")
    loaded = MatchSettings(_env_file=None)  # type: ignore[call-arg]
    assert loaded.abbreviations == {"Pkg": ["Package"], "Hsg": "Housing"}
    assert loaded.max_typos == 0
    assert Abbreviations.build(loaded.abbreviations).expand("hsg") == [("housing",)]


# --- response shape -----------------------------------------------------------------------


def test_term_in_two_fields_yields_one_match_per_field() -> None:
    matches = INDEX.match("diesel")
    assert [(m.field, m.value, m.start, m.end, m.score) for m in matches] == [
        ("expense_categories", "Diesel", 0, 6, 1.0),
        ("cashflow_categories", "Diesel", 0, 6, 1.0),
    ]


def test_overlaps_resolve_to_the_longest_match() -> None:
    # "Site Diesel" beats the "Diesel" inside it; "Pasig Bridge Rehabilitation" beats "Pasig".
    assert found("site diesel for Pasig Bridge Rehabilitation") == [
        ("expense_categories", "Site Diesel", "site diesel"),
        ("projects", "Pasig Bridge Rehabilitation", "Pasig Bridge Rehabilitation"),
    ]


def test_sorted_by_position_with_exact_offsets() -> None:
    text = "Gravel, then progress billing for Pasig"
    matches = INDEX.match(text)
    assert [m.value for m in matches] == ["Gravel", "Progress Billing", "Pasig"]
    assert all(text[m.start : m.end] == m.text for m in matches)
    assert [m.start for m in matches] == sorted(m.start for m in matches)


def test_fields_and_limit() -> None:
    text = "diesel and gravel for Pasig"
    assert {m.field for m in INDEX.match(text, fields=["project_locations"])} == {
        "project_locations"
    }
    limited = INDEX.match(text, limit=2)
    assert len(limited) == 2
    assert all(m.score == 1.0 for m in limited)


def test_exact_match_scores_one_and_match_is_immutable() -> None:
    [match] = INDEX.match("Pasig Bridge Rehabilitation")
    assert match == Match(
        "projects", "Pasig Bridge Rehabilitation", "Pasig Bridge Rehabilitation", 0, 27, 1.0
    )
    with pytest.raises(AttributeError):
        match.score = 0.5  # type: ignore[misc]


def test_empty_or_wordless_text() -> None:
    assert INDEX.match("?!  ...") == []
    assert tokenize("") == []


# --- incremental changes ------------------------------------------------------------------


def test_a_change_applied_in_place_answers_like_a_fresh_build() -> None:
    new_lists = {n: list(VOCABULARY[n]) for n in FIELDS}
    new_lists["projects"].remove("Pasig Bridge Rehabilitation")
    new_lists["projects"].append("Marikina Riverbanks Seawall")
    new_lists["expense_categories"].append("Cement")
    incremental = index_of()
    incremental.apply(
        8,
        {"projects": ["Marikina Riverbanks Seawall"], "expense_categories": ["Cement"]},
        {"projects": ["Pasig Bridge Rehabilitation"]},
    )
    fresh = index_of(new_lists)
    for text in (
        "Pasig Bridge Rehabilitation",
        "marikina riverbanks seawall and cement",
        "marikina riverbanks",  # no longer a unique prefix: two terms start with it
        "Marikina Riverbanks Development Phase 2",
        "cemnet for pasig",
    ):
        assert incremental.match(text) == fresh.match(text), text
    assert incremental.version == 8


def test_a_partial_name_is_unique_again_as_soon_as_its_rival_is_removed() -> None:
    index = index_of()
    assert projects("news on Marikina Flood Control", index) == set()  # Phase 1 or Phase 2?
    index.apply(8, {}, {"projects": ["Marikina Flood Control Phase 2"]})
    assert projects("news on Marikina Flood Control", index) == {"Marikina Flood Control Phase 1"}
    index.apply(9, {"projects": ["Marikina Flood Control Phase 2"]}, {})
    assert projects("news on Marikina Flood Control", index) == set()


PLACES = ("Pasig", "Marikina", "Taguig", "Antipolo", "Cainta", "Taytay", "Binangonan", "Angono",
          "Teresa", "Morong", "Baras", "Tanay", "Pililla", "Cardona", "Rodriguez", "Caloocan",
          "Malabon", "Navotas", "Valenzuela", "Pateros")  # fmt: skip
FACILITIES = ("Seawall", "Flood Control", "Bridge Rehabilitation", "Road Widening", "Drainage",
              "Public Market", "Health Center", "School Building", "Water System",
              "Covered Court")  # fmt: skip
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")  # fmt: skip


@functools.lru_cache(maxsize=2)
def synthetic_index(size: int) -> MatchIndex:
    """``size`` terms: project names and file names from combinations (the first 10k terms of
    the 100k vocabulary are the 10k vocabulary)."""
    projects = [
        f"{place} {facility} Lot {lot}"
        for lot in range(size // 400 + 1)
        for place in PLACES
        for facility in FACILITIES
    ][: size // 2]
    files = [
        f"Expenses {place} {month} {2000 + n % 25} {n}.xlsx"
        for n in range(size // 480 + 1)
        for place in PLACES
        for month in MONTHS
    ][: size - len(projects)]
    return index_of({"projects": projects, "expense_files": files})


@pytest.mark.parametrize(
    ("field", "term"),
    [
        ("projects", "Pasig Seawall Lot 7777"),  # known words, a new branch deep in the trie
        ("projects", "Zamboanga Hovercraft Terminal"),  # new words: the lexicon grows
        ("expense_files", "Expenses Pasig March 2024 7.xlsx.bak"),  # below an existing term
    ],
)
def test_a_one_term_change_costs_the_same_at_10k_and_100k_terms(field: str, term: str) -> None:
    """Adding then removing one term writes as many index entries (trie nodes visited, words and
    deleted forms) whatever the size of the vocabulary: no work grows with it."""
    costs = []
    for size in (10_000, 100_000):
        index = synthetic_index(size)
        assert index.term_count == size
        layer = index.layer
        before = layer.touched()
        index.apply(index.version + 1, {field: [term]}, {})
        added = layer.touched() - before
        assert [m.value for m in index.match(f"about {term}?")] == [term]
        before = layer.touched()
        index.apply(index.version + 1, {}, {field: [term]})
        removed = layer.touched() - before
        assert index.term_count == size
        costs.append((added, removed))
    (small_add, small_remove), (large_add, large_remove) = costs
    assert 0 < large_add <= small_add + 2, costs
    assert 0 < large_remove <= small_remove + 2, costs
    assert max(large_add, large_remove) < 200, costs


def test_removing_a_term_that_shares_its_words_costs_the_same_at_10k_and_100k_terms() -> None:
    costs = []
    for size in (10_000, 100_000):
        index = synthetic_index(size)
        layer = index.layer
        before = layer.touched()
        index.apply(index.version + 1, {}, {"projects": ["Taguig Drainage Lot 3"]})
        index.apply(index.version + 1, {"projects": ["Taguig Drainage Lot 3"]}, {})
        costs.append(layer.touched() - before)
    assert 0 < costs[1] <= costs[0] + 2, costs


@pytest.mark.parametrize(
    ("term", "question"),
    [
        ("govt", "how was govt this week"),
        ("Brgy. San Roque, Antipolo", "works in BRGY SAN ROQUE ANTIPOLO"),
        ("Ave Maria Hall", "the ave maria hall budget"),
    ],
)
def test_a_term_written_as_stored_scores_exactly_one(term: str, question: str) -> None:
    """Exact = 1.0, even for a term made of words the abbreviation table knows."""
    index = index_of({"projects": [term]})
    matches = index.match(question)
    assert [(m.value, m.score) for m in matches] == [(term, 1.0)]
