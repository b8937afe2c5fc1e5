"""Request dependencies: the app's vocabulary cache lives on ``app.state``, created in lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from vocabsync.services.redis_vocabulary import RedisVocabularyCache


def get_cache(request: Request) -> RedisVocabularyCache:
    cache: RedisVocabularyCache = request.app.state.vocabulary_cache
    return cache


CacheDep = Annotated[RedisVocabularyCache, Depends(get_cache)]
