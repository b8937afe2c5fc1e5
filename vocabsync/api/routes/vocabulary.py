"""Vocabulary endpoints: read the current vocabulary, force a refresh.

``POST /api/vocabulary/refresh`` keeps the design document's response shape (success, message,
vocabulary_counts) and adds ``project_locations`` to the counts. Both list every configured field
(:mod:`vocabsync.api.field_models`), so :func:`build` makes the router for one field tuple.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, HTTPException, Response
from pydantic import BaseModel, Field

from vocabsync.api.deps import CacheDep, VocabularyDep
from vocabsync.api.errors import error_responses
from vocabsync.api.field_models import refresh_response, vocabulary_response
from vocabsync.api.security import RequireReadToken, RequireRefreshToken
from vocabsync.errors import VocabSyncError
from vocabsync.vocabulary import Snapshot

logger = logging.getLogger(__name__)


class VocabularyMeta(BaseModel):
    version: int = Field(description="Database state the snapshot was read from (monotonic).")
    refreshed_at: datetime | None = Field(description="When the snapshot was loaded.")
    source: Literal["memory", "redis", "database", "none"] = Field(
        description="Where this answer came from: the in-process snapshot, or a read-through."
    )


def build(fields: tuple[str, ...]) -> APIRouter:
    """The vocabulary endpoints for the configured ``fields``."""
    router = APIRouter(prefix="/api/vocabulary", tags=["Vocabulary"])
    router.add_api_route(
        "",
        _serving(fields),
        methods=["GET"],
        response_model=vocabulary_response(fields, VocabularyMeta),
        summary="The current vocabulary",
        dependencies=[RequireReadToken],
        responses={
            304: {"description": "Not modified: `If-None-Match` names the current `ETag`."},
            **error_responses(401, 503),
        },
    )
    router.add_api_route(
        "/refresh",
        _refreshing(refresh_response(fields)),
        methods=["POST"],
        response_model=refresh_response(fields),
        summary="Reload the vocabulary from PostgreSQL now",
        dependencies=[RequireRefreshToken],
        responses=error_responses(401, 500),
    )
    return router


def _serving(fields: tuple[str, ...]) -> Callable[..., Awaitable[Response]]:
    async def get_vocabulary(
        current: VocabularyDep,
        if_none_match: Annotated[str | None, Header()] = None,
    ) -> Response:
        """One sorted list per field, from memory; read through to Redis/PostgreSQL only in
        fallback mode.

        The body is encoded once per version (and source) and served as bytes to every caller
        after that; the ``ETag`` names the version, so a poller sending ``If-None-Match`` gets a
        304 with no body until the vocabulary changes.
        """
        return _vocabulary_response(current.snapshot, current.source, fields, if_none_match)

    return get_vocabulary


def _vocabulary_response(
    snapshot: Snapshot, source: str, fields: tuple[str, ...], if_none_match: str | None
) -> Response:
    etag = entity_tag(snapshot, source)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if if_none_match is not None and _listed_tags(if_none_match) & {etag, "*"}:
        return Response(status_code=304, headers=headers)
    body = snapshot.memo(etag)
    if body is None:
        body = snapshot.remember(etag, _encode(snapshot, source, fields))
    return Response(content=body, media_type="application/json", headers=headers)


def entity_tag(snapshot: Snapshot, source: str) -> str:
    """Names one version of one database history, as served from one source."""
    history = hashlib.sha256(snapshot.identity.encode()).hexdigest()[:12]
    return f'"{snapshot.version:x}-{history}-{source}"'


def _listed_tags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}


def _encode(snapshot: Snapshot, source: str, fields: tuple[str, ...]) -> bytes:
    refreshed = snapshot.refreshed_at
    meta = VocabularyMeta(
        version=snapshot.version,
        refreshed_at=datetime.fromtimestamp(refreshed, tz=UTC) if refreshed else None,
        source=source,
    )
    # Each field's array is kept encoded with its terms (a change re-encodes only what it
    # touched), so a new version costs joining bytes, not encoding a million strings.
    parts = [b'"' + name.encode() + b'":' + snapshot.get(name).to_json() for name in fields]
    meta_json = json.dumps(meta.model_dump(mode="json"), separators=(",", ":")).encode()
    return b"{" + b",".join(parts) + b',"meta":' + meta_json + b"}"


def _refreshing(model: type[BaseModel]) -> Callable[..., Awaitable[BaseModel]]:
    async def refresh_vocabulary(cache: CacheDep) -> BaseModel:
        """Reload from PostgreSQL, store in Redis and tell every instance.

        Use after a bulk import or when troubleshooting. Concurrent calls share one reload.
        """
        logger.info("manual vocabulary refresh requested", extra={"action": "manual_refresh"})
        try:
            snapshot = await cache.refresh_cache("manual")
        except VocabSyncError as exc:
            message = cache.settings.redact(str(exc))
            logger.error(
                "manual refresh failed: %s", message, extra={"action": "manual_refresh_failed"}
            )
            raise HTTPException(
                status_code=500, detail=f"Failed to refresh vocabulary cache: {message}"
            ) from None
        return model.model_validate(
            {
                "success": True,
                "message": "Vocabulary cache refreshed successfully",
                "vocabulary_counts": snapshot.counts(),
            }
        )

    return refresh_vocabulary
