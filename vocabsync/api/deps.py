"""Request dependencies: the app's VocabSync, bound to ``app.state`` by its lifespan.

``VocabSync.lifespan`` (which ``vocab.router`` carries) stores the instance as
``app.state.vocabsync`` and its parts as ``app.state.vocabulary_cache`` and
``app.state.entity_matcher``; the routes read them here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from vocabsync.services.redis_vocabulary import RedisVocabularyCache

NOT_SET_UP = (
    "vocabsync is not set up on this app: include `vocab.router` (its lifespan starts vocabsync "
    "with the app), or enter `vocab.lifespan(app)` in the app's own lifespan"
)


class NotSetUpError(RuntimeError):
    """A vocabsync route was called on an app whose lifespan never bound a VocabSync."""


def bound(request: Request, name: str) -> Any:
    value = getattr(request.app.state, name, None)
    if value is None:
        raise NotSetUpError(NOT_SET_UP)
    return value


def get_cache(request: Request) -> RedisVocabularyCache:
    cache: RedisVocabularyCache = bound(request, "vocabulary_cache")
    return cache


CacheDep = Annotated[RedisVocabularyCache, Depends(get_cache)]
