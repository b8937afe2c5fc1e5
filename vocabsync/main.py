"""FastAPI application: the vocabulary routes and a lifespan that owns the cache.

``create_app(settings)`` builds an app with its own cache (tests and embedding); the module-level
``app`` uses the design document's shared ``redis_vocabulary_cache``. Nothing connects at import.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from vocabsync.api.routes import health, matching, vocabulary
from vocabsync.config import Settings
from vocabsync.services.entity_matcher import EntityMatcher, entity_matcher
from vocabsync.services.redis_vocabulary import RedisVocabularyCache, redis_vocabulary_cache

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    cache: RedisVocabularyCache | None = None,
    matcher: EntityMatcher | None = None,
) -> FastAPI:
    """An app whose lifespan starts the cache's listener and stops it on shutdown.

    The entity matcher follows the cache's snapshots; its worker thread lives as long as the
    lifespan, and startup waits (briefly) for its first index.
    """
    vocabulary_cache = cache or RedisVocabularyCache(settings)
    entity_matcher_ = matcher or EntityMatcher()
    entity_matcher_.attach(vocabulary_cache)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.vocabulary_cache = vocabulary_cache
        app.state.entity_matcher = entity_matcher_
        entity_matcher_.start()
        try:
            await vocabulary_cache.start_listener()
            if vocabulary_cache.has_snapshot:
                await entity_matcher_.wait_ready()
            yield
        finally:
            await vocabulary_cache.stop()
            entity_matcher_.close()

    app = FastAPI(
        title="vocabsync",
        summary="Real-time vocabulary for the AI API server",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.include_router(vocabulary.router)
    app.include_router(matching.router)
    app.include_router(health.router)
    return app


app = create_app(cache=redis_vocabulary_cache, matcher=entity_matcher)
