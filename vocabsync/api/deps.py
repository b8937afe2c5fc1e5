"""Request dependencies: the app's vocabulary cache (on ``app.state``, created in lifespan) and
the vocabulary every read answers from, with the one "no vocabulary yet" check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from vocabsync.api.errors import NO_VOCABULARY
from vocabsync.services.redis_vocabulary import RedisVocabularyCache, Source
from vocabsync.vocabulary import Snapshot


def get_cache(request: Request) -> RedisVocabularyCache:
    cache: RedisVocabularyCache = request.app.state.vocabulary_cache
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
