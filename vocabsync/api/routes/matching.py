"""``POST /api/vocabulary/match``: the vocabulary terms named in a question, with their spans.

Answers from the instance's current matching index (kept as fresh as the snapshot, see
:mod:`vocabsync.services.entity_matcher`); the same code serves in-process callers. The field
names it accepts and answers with are the configured ones (an added field is an entity type of
its own), so :func:`build` makes the router for one field tuple.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from vocabsync.api.deps import RequireVocabulary
from vocabsync.api.errors import error_responses
from vocabsync.api.field_models import field_type, with_parameter
from vocabsync.api.security import RequireReadToken
from vocabsync.matching.settings import MAX_TEXT_LENGTH
from vocabsync.services.entity_matcher import EntityMatcher, IndexNotReadyError, MatchResult

INLINE_TEXT_LENGTH = 500
"""Longer texts are matched on a worker thread, so the event loop keeps serving meanwhile."""


def get_matcher(request: Request) -> EntityMatcher:
    matcher: EntityMatcher = request.app.state.entity_matcher
    return matcher


MatcherDep = Annotated[EntityMatcher, Depends(get_matcher)]


def _whole_number(value: object) -> object:
    """JSON has one kind of number, so 5.0 is the integer 5; but "5" and true are no numbers."""
    if isinstance(value, bool | str):
        raise ValueError("Input should be a valid integer (a JSON number, not a string)")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class MatchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"text": "how much diesel did we use on marikina riverbanks ph2?"}]
        },
    )

    text: str = Field(
        strict=True,
        min_length=1,
        max_length=MAX_TEXT_LENGTH,
        description=f"The question, 1 to {MAX_TEXT_LENGTH} characters.",
    )
    fields: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Search only these vocabulary fields (default: all of them).",
    )
    limit: Annotated[int | None, BeforeValidator(_whole_number)] = Field(
        default=None,
        ge=1,
        le=1000,
        description="Return at most this many matches, the best-scoring ones (default: all).",
    )


class MatchItem(BaseModel):
    field: str = Field(description="The vocabulary list the term is in (its entity type).")
    value: str = Field(description="The vocabulary term, as stored.")
    text: str = Field(description="The matched words of the question: text[start:end].")
    start: int = Field(description="Character offset of the match in the question.")
    end: int = Field(description="Character offset just after the match (exclusive).")
    score: float = Field(ge=0, le=1, description="1.0 for an exact match, lower for guesses.")


class MatchResponse(BaseModel):
    matches: list[MatchItem] = Field(
        description="Sorted by position; one per field when a term is in two lists."
    )
    version: int = Field(description="The vocabulary snapshot version the index was built from.")


@functools.cache
def _models(fields: tuple[str, ...]) -> tuple[type[MatchRequest], type[MatchResponse]]:
    """The request and response models with ``fields`` as the only field names."""
    name = field_type(fields)
    request: type[MatchRequest] = create_model(
        "MatchRequest",
        __base__=MatchRequest,
        fields=(
            list[name] | None,  # type: ignore[valid-type]
            Field(
                default=None,
                min_length=1,
                description="Search only these vocabulary fields (default: all of them).",
            ),
        ),
    )
    item: type[MatchItem] = create_model(
        "MatchItem",
        __base__=MatchItem,
        field=(name, Field(description="The vocabulary list the term is in (its entity type).")),
    )
    response: type[MatchResponse] = create_model(
        "MatchResponse",
        __base__=MatchResponse,
        matches=(
            list[item],
            Field(description="Sorted by position; one per field when a term is in two lists."),
        ),
    )
    return request, response


def build(fields: tuple[str, ...]) -> APIRouter:
    """``POST /api/vocabulary/match`` for the configured ``fields``."""
    request, response = _models(fields)

    async def match(body: MatchRequest, matcher: MatcherDep) -> MatchResponse:
        """Projects, locations, files and categories (and any configured field) named in
        ``text``, typos and all.

        Case, accents, punctuation and spacing are ignored; one typo per term is tolerated (two
        in long names); common abbreviations (Bldg, Ph., Sto., Brgy ...) are understood; a
        unique beginning of a name ("Marikina Riverbanks") names the one term that starts with
        it. Overlapping matches resolve to the longest, then the best-scoring.
        """
        return await _answer(body, matcher)

    with_parameter(match, "body", request)
    router = APIRouter(prefix="/api/vocabulary", tags=["Vocabulary"])
    router.add_api_route(
        "/match",
        match,
        methods=["POST"],
        response_model=response,
        summary="Find vocabulary terms in a question",
        dependencies=[RequireReadToken, RequireVocabulary],
        responses=error_responses(400, 401, 503),
    )
    return router


async def _answer(body: MatchRequest, matcher: MatcherDep) -> MatchResponse:
    try:
        if len(body.text) > INLINE_TEXT_LENGTH:
            result = await asyncio.to_thread(matcher.match, body.text, body.fields, body.limit)
        else:
            result = matcher.match(body.text, body.fields, body.limit)
    except IndexNotReadyError as exc:
        raise HTTPException(
            status_code=503, detail=str(exc), headers={"Retry-After": "1"}
        ) from None
    return _response(result)


def _response(result: MatchResult) -> MatchResponse:
    return MatchResponse(
        matches=[
            MatchItem(
                field=m.field,
                value=m.value,
                text=m.text,
                start=m.start,
                end=m.end,
                score=m.score,
            )
            for m in result.matches
        ],
        version=result.version,
    )
