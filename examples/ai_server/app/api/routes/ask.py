"""``POST /ask``: the vocabulary entities a question names.

A real AI server would go on to build its query or prompt from them; this one answers with them.
Matching reads the in-process index vocabsync keeps current: no network call per question, so it
keeps answering while Redis or PostgreSQL is down.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from app.config import Settings, get_settings
from vocabsync import MAX_TEXT_LENGTH, IndexNotReadyError
from vocabsync.fastapi import VocabSyncDep

router = APIRouter(tags=["AI"])

SettingsDep = Annotated[Settings, Depends(get_settings)]


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=MAX_TEXT_LENGTH)


class Entity(BaseModel):
    field: str = Field(description="The vocabulary list: projects, expense_categories, ...")
    value: str = Field(description="The term as stored in the database.")
    text: str = Field(description="The words of the question that name it.")
    start: int
    end: int
    score: float = Field(description="1.0 when written as stored, lower for a guess.")


class AskResponse(BaseModel):
    question: str
    entities: list[Entity]
    vocabulary_version: int


@router.post(
    "/ask",
    summary="The entities a question names",
    responses={503: {"description": "No vocabulary loaded yet; retry shortly."}},
)
async def ask(body: AskRequest, vocab: VocabSyncDep, settings: SettingsDep) -> AskResponse:
    try:
        matches = vocab.match(body.question, limit=settings.max_entities)
    except IndexNotReadyError as exc:
        raise HTTPException(
            status_code=503, detail=str(exc), headers={"Retry-After": "1"}
        ) from None
    return AskResponse(
        question=body.question,
        entities=[
            Entity(
                field=m.field, value=m.value, text=m.text, start=m.start, end=m.end, score=m.score
            )
            for m in matches
            if m.score >= settings.min_score
        ],
        vocabulary_version=vocab.version,
    )
