"""Entity matching over the vocabulary: normalisation, abbreviations, the index and its overlay.

The service that keeps an index current for the live snapshot is
:mod:`app.services.entity_matcher`; this package is the machinery it builds on.
"""

from app.matching.abbreviations import Abbreviations
from app.matching.index import MatchIndex
from app.matching.model import Match
from app.matching.settings import MAX_TEXT_LENGTH, MatchSettings

__all__ = ["MAX_TEXT_LENGTH", "Abbreviations", "Match", "MatchIndex", "MatchSettings"]
