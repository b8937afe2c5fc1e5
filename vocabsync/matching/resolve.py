"""From the candidates of a search to the answer: spelling, exactness, overlaps."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from rapidfuzz.distance import Levenshtein

from vocabsync.matching.text import Token, words


@dataclass(frozen=True, slots=True)
class Found:
    """A term found at ``start``..``end`` of the question (character offsets)."""

    field: str
    value: str
    start: int
    end: int
    score: float
    exact: bool


def closest(values: Iterable[str], tokens: list[Token], first: int, last: int) -> str:
    """Of several spellings of one term ("Phase II", "Phase 2"), the one written most alike."""
    said = " ".join(t.text for t in tokens[first : last + 1])
    return min(sorted(values), key=lambda value: Levenshtein.distance(said, " ".join(words(value))))


def as_written(found: Found, text: str) -> Found:
    """A term written exactly as stored (but for case, accents, spacing and punctuation) is an
    exact match and scores 1.0, even when it was found through its abbreviation reading
    ("Govt" in the question for the term "Govt")."""
    if found.score < 1.0 and words(text[found.start : found.end]) == words(found.value):
        return replace(found, score=1.0, exact=True)
    return found


def resolve(found: list[Found], order: Mapping[str, int]) -> list[Found]:
    """Drop guesses that tie, then keep the longest, then best-scoring, of overlapping matches.

    The same words in several fields (a category in both lists) yield one match per field;
    ``order`` (field -> position among the fields) breaks the remaining ties.
    """
    best: dict[tuple[str, str, int, int], Found] = {}
    for item in found:
        key = (item.field, item.value, item.start, item.end)
        kept = best.get(key)
        if kept is None or item.score > kept.score:
            best[key] = item
    by_place: dict[tuple[str, int, int, float], list[Found]] = {}
    for item in best.values():
        by_place.setdefault((item.field, item.start, item.end, item.score), []).append(item)
    unambiguous = [
        items[0]
        for items in by_place.values()
        if len(items) == 1 or any(item.exact for item in items)
    ]
    unambiguous.sort(key=lambda f: (-(f.end - f.start), -f.score, f.start, order[f.field]))
    chosen: list[Found] = []
    for item in unambiguous:
        clash = False
        for kept in chosen:
            if item.start < kept.end and kept.start < item.end:
                same_words = (kept.start, kept.end, kept.score) == (
                    item.start,
                    item.end,
                    item.score,
                )
                if not (same_words and kept.field != item.field):
                    clash = True
                    break
        if not clash:
            chosen.append(item)
    return chosen
