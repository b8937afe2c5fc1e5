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

from fastapi import APIRouter, Depends, Request

from vocabsync.api.deps import bound
from vocabsync.api.router import build_router
from vocabsync.embed import VocabSync

__all__ = ["VocabSyncDep", "create_router", "get_vocabsync"]


def create_router(vocab: VocabSync) -> APIRouter:
    """A new router with vocabsync's endpoints, whose lifespan runs ``vocab`` (see module doc).

    ``vocab.router`` is the same, built once; use this for a second copy (another prefix).
    """
    return build_router(vocab.lifespan, vocab.fields)


def get_vocabsync(request: Request) -> VocabSync:
    """The app's running :class:`~vocabsync.embed.VocabSync` (for your own routes)."""
    vocab: VocabSync = bound(request, "vocabsync")
    return vocab


VocabSyncDep = Annotated[VocabSync, Depends(get_vocabsync)]
"""A route parameter typed with this receives the app's running :class:`VocabSync`."""
