"""FastAPI integration: vocabsync's endpoints and lifespan in an existing app, in two lines.

::

    vocab = VocabSync.from_settings()
    app.include_router(vocab.router)

``vocab.router`` (built by :func:`create_router`) serves ``GET /api/vocabulary``,
``POST /api/vocabulary/refresh``, ``POST /api/vocabulary/match``, ``GET /health``, ``GET /ready``
and ``GET /metrics``, and carries the VocabSync's lifespan: FastAPI runs an included router's
lifespan inside the app's own, so vocabsync starts and stops with the app. When the app's own
startup code needs the vocabulary, enter ``vocab.lifespan(app)`` first in the app's lifespan (the
router's then does nothing more). Your routes reach the instance with :data:`VocabSyncDep`.

Importing this module creates nothing and reads no settings.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from vocabsync.api.deps import get_vocabsync
from vocabsync.api.routes import health, matching, vocabulary
from vocabsync.embed import VocabSync

__all__ = ["VocabSyncDep", "create_router", "get_vocabsync"]


def create_router(vocab: VocabSync) -> APIRouter:
    """A new router with vocabsync's endpoints, whose lifespan runs ``vocab`` (see module doc).

    ``vocab.router`` is the same, built once; use this for a second copy (another prefix).
    """
    router = APIRouter(lifespan=vocab.lifespan)
    router.include_router(vocabulary.router)
    router.include_router(matching.router)
    router.include_router(health.router)
    return router


VocabSyncDep = Annotated[VocabSync, Depends(get_vocabsync)]
"""A route parameter typed with this receives the app's running :class:`VocabSync`."""
