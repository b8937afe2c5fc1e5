"""The standalone API instance (``vocabsync serve``): vocabsync's router in an app of its own.

It is wired exactly as an embedding app is (:mod:`vocabsync.fastapi`): a :class:`VocabSync` and
``app.include_router(vocab.router)``. ``create_app(settings)`` builds one with its own cache
(tests); ``vocabsync.main:app`` (what ``vocabsync serve`` runs) is built on first access, on the
design document's module-level ``redis_vocabulary_cache``, so importing this module creates no
app and nothing connects until the app starts.
"""

from __future__ import annotations

import functools

from fastapi import FastAPI

from vocabsync.config import Settings
from vocabsync.embed import VocabSync
from vocabsync.services.entity_matcher import EntityMatcher, entity_matcher
from vocabsync.services.redis_vocabulary import RedisVocabularyCache, redis_vocabulary_cache

__all__ = ["create_app"]


def create_app(
    settings: Settings | None = None,
    cache: RedisVocabularyCache | None = None,
    matcher: EntityMatcher | None = None,
) -> FastAPI:
    """An app serving vocabsync's endpoints; its lifespan starts the cache and the matcher.

    Startup waits (briefly) for the matcher's first index; shutdown stops its worker thread.
    """
    vocab = VocabSync(cache or RedisVocabularyCache(settings), matcher)
    app = FastAPI(
        title="vocabsync",
        summary="Real-time vocabulary for the AI API server",
        version="0.1.0",
    )
    app.include_router(vocab.router)
    return app


@functools.cache
def _default_app() -> FastAPI:
    return create_app(cache=redis_vocabulary_cache, matcher=entity_matcher)


def __getattr__(name: str) -> FastAPI:
    """``vocabsync.main.app``, built on first access (uvicorn's ``vocabsync.main:app``)."""
    if name == "app":
        return _default_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
