"""The router that carries vocabsync's endpoints and a lifespan (see :mod:`vocabsync.fastapi`).

Kept apart from :mod:`vocabsync.embed` so that the facade can build its router without the two
modules importing each other: anything with a FastAPI lifespan will do.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import APIRouter, FastAPI

from vocabsync.api.routes import health, matching, vocabulary

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]


def build_router(lifespan: Lifespan) -> APIRouter:
    """A new router with vocabsync's endpoints, whose lifespan is ``lifespan``."""
    router = APIRouter(lifespan=lifespan)
    router.include_router(vocabulary.router)
    router.include_router(matching.router)
    router.include_router(health.router)
    return router
