"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from vocabsync.api.deps import CacheDep
from vocabsync.metrics import CONTENT_TYPE

router = APIRouter(tags=["Health"])


@router.get("/health", summary="The process is up")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="The instance holds a vocabulary snapshot",
    responses={503: {"description": "No snapshot yet; the body tells why."}},
)
async def ready(cache: CacheDep, request: Request) -> JSONResponse:
    """200 only when a snapshot is held; the body tells the state of each link and the matcher."""
    body: dict[str, Any] = {"ready": cache.has_snapshot, **cache.status()}
    matcher = getattr(request.app.state, "entity_matcher", None)
    if matcher is not None:
        body["matcher"] = matcher.status()
    return JSONResponse(body, status_code=200 if cache.has_snapshot else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(cache: CacheDep) -> Response:
    """Prometheus text format: refreshes, reads by source, links, snapshot version and size."""
    return Response(cache.metrics.render(), media_type=CONTENT_TYPE)
