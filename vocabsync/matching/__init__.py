"""Entity matching over the vocabulary: normalisation, abbreviations, an index updated in place.

The service that keeps an index current for the live vocabulary is
:mod:`vocabsync.services.entity_matcher`; this package is the machinery it builds on.
"""

from vocabsync.matching.abbreviations import Abbreviations
from vocabsync.matching.index import MatchIndex
from vocabsync.matching.model import Match
from vocabsync.matching.settings import MAX_TEXT_LENGTH, MatchSettings

__all__ = ["MAX_TEXT_LENGTH", "Abbreviations", "Match", "MatchIndex", "MatchSettings"]
