"""vocabsync: the AI server's vocabulary, kept in sync with PostgreSQL in real time.

The public API for embedding it in-process (README: Embed it in your AI server)::

    from vocabsync import VocabSync

    vocab = VocabSync.from_settings()
    async with vocab:
        vocab.match("fuel spend on marikina in march")

and :mod:`vocabsync.fastapi` for a FastAPI app. Importing this package creates nothing, reads no
settings and opens no connection; the names below are imported on first use, so the command line
(``vocabsync bridge`` ...) does not load the matcher it does not need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vocabsync.config import Settings
    from vocabsync.embed import UpdateCallback, VocabSync, VocabularyUpdate
    from vocabsync.errors import RefreshError, VocabSyncError
    from vocabsync.matching.model import Match
    from vocabsync.matching.settings import MAX_TEXT_LENGTH, MatchSettings
    from vocabsync.services.entity_matcher import IndexNotReadyError
    from vocabsync.vocabulary import FieldName

_EXPORTS = {
    "MAX_TEXT_LENGTH": "vocabsync.matching.settings",
    "FieldName": "vocabsync.vocabulary",
    "IndexNotReadyError": "vocabsync.services.entity_matcher",
    "Match": "vocabsync.matching.model",
    "MatchSettings": "vocabsync.matching.settings",
    "RefreshError": "vocabsync.errors",
    "Settings": "vocabsync.config",
    "UpdateCallback": "vocabsync.embed",
    "VocabSync": "vocabsync.embed",
    "VocabSyncError": "vocabsync.errors",
    "VocabularyUpdate": "vocabsync.embed",
}

__all__ = [
    "MAX_TEXT_LENGTH",
    "FieldName",
    "IndexNotReadyError",
    "Match",
    "MatchSettings",
    "RefreshError",
    "Settings",
    "UpdateCallback",
    "VocabSync",
    "VocabSyncError",
    "VocabularyUpdate",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
