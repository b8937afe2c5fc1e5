"""What a match is: a vocabulary term found in a question, with where and how well."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Match:
    """``text`` is ``question[start:end]``; ``score`` is 1.0 when exact, less for a guess."""

    field: str
    value: str
    text: str
    start: int
    end: int
    score: float
