"""Request dependencies: the app's VocabSync parts, bound to ``app.state`` by its lifespan, and
the vocabulary every read answers from, with the one "no vocabulary yet" check.

``VocabSync.lifespan`` (which ``vocab.router`` carries) stores the instance as
``app.state.vocabsync`` and its parts as ``app.state.vocabulary_cache`` and
``app.state.entity_matcher``; the routes read them here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from vocabsync.api.errors import NO_VOCABULARY
from vocabsync.services.redis_vocabulary import RedisVocabularyCache
from vocabsync.services.vocabulary_state import Source
from vocabsync.vocabulary import Snapshot

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


@dataclass(frozen=True, slots=True)
class CurrentVocabulary:
    """The complete snapshot a read answers from, and where it came from."""

    snapshot: Snapshot
    source: Source


async def current_vocabulary(cache: CacheDep) -> CurrentVocabulary:
    """From memory; read through only in fallback mode. 503 while no vocabulary could be loaded
    at all (PostgreSQL and Redis unreachable since startup)."""
    snapshot, source = await cache.read_snapshot()
    if not snapshot.is_complete:
        raise HTTPException(status_code=503, detail=NO_VOCABULARY)
    return CurrentVocabulary(snapshot, source)


VocabularyDep = Annotated[CurrentVocabulary, Depends(current_vocabulary)]
RequireVocabulary = Depends(current_vocabulary)
"""For routes that answer from a derived index rather than the snapshot itself (matching)."""
