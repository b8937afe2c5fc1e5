"""Matching settings, from ``VOCABSYNC_MATCH_*`` environment variables or the ``.env`` file."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MAX_TEXT_LENGTH = 2000
"""Longest question the endpoint accepts, in characters (a question, not a document)."""


class MatchSettings(BaseSettings):
    """How tolerant matching is, and how long startup waits for the index."""

    model_config = SettingsConfigDict(
        env_prefix="VOCABSYNC_MATCH_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    enabled: bool = Field(
        default=True, description="Off: no index is kept and the endpoint answers 503."
    )
    max_typos: int = Field(
        default=1, ge=0, le=2, description="Edits (insert/delete/substitute/swap) per term."
    )
    long_term_typos: int = Field(
        default=2,
        ge=0,
        le=3,
        description="Edits allowed in a long term (see long_term_letters); 0 typos turns it off.",
    )
    long_term_letters: int = Field(
        default=16, ge=1, description="Letters from which a term counts as long."
    )
    min_typo_length: int = Field(
        default=4, ge=3, description="Shortest vocabulary word that may be matched with a typo."
    )
    min_single_word_typo_length: int = Field(
        default=5, ge=3, description="Shortest one-word term that may be matched with a typo."
    )
    prefix_min_words: int = Field(
        default=2, ge=1, description="Words a partial name must have (one-word: see docs)."
    )
    abbreviations: Annotated[dict[str, str | list[str]], NoDecode] = Field(
        default_factory=dict,
        description='Extra abbreviations, JSON: {"Bldg": "Building", "St": ["Street", "Saint"]}.',
    )
    startup_wait_seconds: float = Field(
        default=2.0,
        ge=0,
        description=(
            "How long startup waits for the first index: long enough for a demo-size vocabulary, "
            "short enough that a large one is served (and ready) while its index still builds."
        ),
    )

    @field_validator("abbreviations", mode="before")
    @classmethod
    def _parse_abbreviations(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"VOCABSYNC_MATCH_ABBREVIATIONS is not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise ValueError('expected a JSON object like {"Bldg": "Building"}')
        return value

    @property
    def typo_budget_max(self) -> int:
        return max(self.max_typos, self.long_term_typos)

    def typo_budget(self, letters: int) -> int:
        """Edits allowed in a term of ``letters`` letters."""
        if self.max_typos and letters >= self.long_term_letters:
            return max(self.max_typos, self.long_term_typos)
        return self.max_typos
