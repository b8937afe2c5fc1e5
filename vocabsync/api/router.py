"""The router that carries vocabsync's endpoints and a lifespan (see :mod:`vocabsync.fastapi`).

Kept apart from :mod:`vocabsync.embed` so that the facade can build its router without the two
modules importing each other: anything with a FastAPI lifespan will do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import APIRouter, FastAPI

from vocabsync.api.routes import health, matching, vocabulary
from vocabsync.vocabulary import FIELDS

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]


def build_router(lifespan: Lifespan, fields: Sequence[str] = FIELDS) -> APIRouter:
    """A new router with vocabsync's endpoints, whose lifespan is ``lifespan``; its models (and
    so the OpenAPI schema) list ``fields``, the configured vocabulary fields."""
    router = APIRouter(lifespan=lifespan)
    router.include_router(vocabulary.build(tuple(fields)))
    router.include_router(matching.build(tuple(fields)))
    router.include_router(health.router)
    return router
