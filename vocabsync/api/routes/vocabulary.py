"""Vocabulary endpoints: read the current vocabulary, force a refresh.

``POST /api/vocabulary/refresh`` keeps the design document's response shape (success, message,
vocabulary_counts) and adds ``project_locations`` to the counts.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, HTTPException, Response
from pydantic import BaseModel, Field

from vocabsync.api.deps import CacheDep, VocabularyDep
from vocabsync.api.errors import error_responses
from vocabsync.api.security import RequireReadToken, RequireRefreshToken
from vocabsync.errors import VocabSyncError
from vocabsync.vocabulary import FIELDS, Snapshot

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/vocabulary", tags=["Vocabulary"])


class VocabularyMeta(BaseModel):
    version: int = Field(description="Database state the snapshot was read from (monotonic).")
    refreshed_at: datetime | None = Field(description="When the snapshot was loaded.")
    source: Literal["memory", "redis", "database", "none"] = Field(
        description="Where this answer came from: the in-process snapshot, or a read-through."
    )


class VocabularyResponse(BaseModel):
    projects: list[str]
    project_locations: list[str]
    expense_files: list[str]
    cashflow_files: list[str]
    expense_categories: list[str]
    cashflow_categories: list[str]
    meta: VocabularyMeta


class VocabularyCounts(BaseModel):
    projects: int
    project_locations: int
    expense_categories: int
    cashflow_categories: int
    expense_files: int
    cashflow_files: int


class RefreshResponse(BaseModel):
    success: bool
    message: str
    vocabulary_counts: VocabularyCounts


@router.get(
    "",
    response_model=VocabularyResponse,
    summary="The current vocabulary",
    dependencies=[RequireReadToken],
    responses={
        304: {"description": "Not modified: `If-None-Match` names the current `ETag`."},
        **error_responses(401, 503),
    },
)
async def get_vocabulary(
    current: VocabularyDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The six lists, from memory; read through to Redis/PostgreSQL only in fallback mode.

    The body is encoded once per version (and source) and served as bytes to every caller
    after that; the ``ETag`` names the version, so a poller sending ``If-None-Match`` gets a
    304 with no body until the vocabulary changes.
    """
    snapshot = current.snapshot
    etag = entity_tag(snapshot, current.source)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if if_none_match is not None and _listed_tags(if_none_match) & {etag, "*"}:
        return Response(status_code=304, headers=headers)
    body = snapshot.memo(etag)
    if body is None:
        body = snapshot.remember(etag, _encode(snapshot, current.source))
    return Response(content=body, media_type="application/json", headers=headers)


def entity_tag(snapshot: Snapshot, source: str) -> str:
    """Names one version of one database history, as served from one source."""
    history = hashlib.sha256(snapshot.identity.encode()).hexdigest()[:12]
    return f'"{snapshot.version:x}-{history}-{source}"'


def _listed_tags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}


def _encode(snapshot: Snapshot, source: str) -> bytes:
    refreshed = snapshot.refreshed_at
    meta = VocabularyMeta(
        version=snapshot.version,
        refreshed_at=datetime.fromtimestamp(refreshed, tz=UTC) if refreshed else None,
        source=source,
    )
    # Each field's array is kept encoded with its terms (a change re-encodes only what it
    # touched), so a new version costs joining bytes, not encoding a million strings.
    parts = [b'"' + name.encode() + b'":' + snapshot.get(name).to_json() for name in FIELDS]
    meta_json = json.dumps(meta.model_dump(mode="json"), separators=(",", ":")).encode()
    return b"{" + b",".join(parts) + b',"meta":' + meta_json + b"}"


@router.post(
    "/refresh",
    response_model=RefreshResponse,
    summary="Reload the vocabulary from PostgreSQL now",
    dependencies=[RequireRefreshToken],
    responses=error_responses(401, 500),
)
async def refresh_vocabulary(cache: CacheDep) -> RefreshResponse:
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
    return RefreshResponse(
        success=True,
        message="Vocabulary cache refreshed successfully",
        vocabulary_counts=VocabularyCounts(**snapshot.counts()),
    )
