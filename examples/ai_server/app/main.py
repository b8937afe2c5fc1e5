"""The AI server: FastAPI, with vocabsync embedded in-process.

The two lines that embed vocabsync are marked. ``vocab.router`` adds ``/api/vocabulary``,
``/api/vocabulary/refresh``, ``/api/vocabulary/match``, ``/health``, ``/ready`` and ``/metrics``
and brings vocabsync's lifespan; this server's own lifespan enters ``vocab.lifespan(app)`` first
because its startup logs the vocabulary it starts with (without that need, leave it out).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api.routes import ask
from app.config import get_settings
from vocabsync import VocabSync, VocabularyUpdate

logger = logging.getLogger("app")

vocab = VocabSync.from_settings()  # (1) connects to nothing until the app starts


def log_update(update: VocabularyUpdate) -> None:
    logger.info(
        "vocabulary %d -> %d: %s",
        update.previous_version,
        update.version,
        ", ".join(f"{field}={count}" for field, count in update.counts.items()),
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    async with vocab.lifespan(app):  # vocabsync first: the code below sees the vocabulary
        unsubscribe = vocab.on_update(log_update)
        logger.info("ready: vocabulary version %d, %s", vocab.version, vocab.counts())
        try:
            yield
        finally:
            unsubscribe()


def create_app() -> FastAPI:
    app = FastAPI(title=get_settings().title, lifespan=lifespan)
    app.include_router(vocab.router)  # (2) vocabsync's endpoints, and its lifespan
    app.include_router(ask.router)
    return app


app = create_app()
