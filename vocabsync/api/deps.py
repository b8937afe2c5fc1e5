"""Request dependencies: the app's VocabSync, bound to ``app.state`` by its lifespan.

``VocabSync.lifespan`` (which ``vocab.router`` carries) stores the instance as
``app.state.vocabsync`` and its parts as ``app.state.vocabulary_cache`` and
``app.state.entity_matcher``; the routes read them here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from vocabsync.embed import VocabSync
from vocabsync.services.redis_vocabulary import RedisVocabularyCache

NOT_SET_UP = (
    "vocabsync is not set up on this app: include `vocab.router` (its lifespan starts vocabsync "
    "with the app), or enter `vocab.lifespan(app)` in the app's own lifespan"
)


class NotSetUpError(RuntimeError):
    """A vocabsync route was called on an app whose lifespan never bound a VocabSync."""


def _bound(request: Request, name: str) -> Any:
    value = getattr(request.app.state, name, None)
    if value is None:
        raise NotSetUpError(NOT_SET_UP)
    return value


def get_cache(request: Request) -> RedisVocabularyCache:
    cache: RedisVocabularyCache = _bound(request, "vocabulary_cache")
    return cache


def get_vocabsync(request: Request) -> VocabSync:
    """The app's running :class:`~vocabsync.embed.VocabSync` (for your own routes)."""
    vocab: VocabSync = _bound(request, "vocabsync")
    return vocab


CacheDep = Annotated[RedisVocabularyCache, Depends(get_cache)]
