"""The design document's API instance, as a baseline: reload everything on every message.

Loads the six lists from PostgreSQL at startup and again, in full, for every message on
``vocabulary_updated`` (a listener thread, as in the design document), and keeps them in memory.
It has no entity matcher: ``POST /api/vocabulary/match`` only looks up the question's word
sequences in the in-memory lists, exactly, so "matchable" here is "served" (a lower bound for
any matcher that would have to follow the lists).

Endpoints: GET /ready ({"version": ...} in bench/_version.py's format, 503 before the first
load), GET /api/vocabulary, POST /api/vocabulary/match ({"text", "fields"} -> {"matches":
[{"field", "value"}], "version"}). Configuration: DATABASE_URL, REDIS_URL; --port.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path
from typing import Any

import psycopg
import redis
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _version import SNAPSHOT_COLUMNS, pack

CHANNEL = "vocabulary_updated"
SOURCES = {
    "projects": ("Project", "project_name"),
    "project_locations": ("Project", "location"),
    "expense_files": ("Expenses", "file_name"),
    "cashflow_files": ("CashFlow", "file_name"),
    "expense_categories": ("ExpensesColumn", "column_name"),
    "cashflow_categories": ("CashFlowColumn", "column_name"),
}
LOAD_SQL = (
    f"SELECT {SNAPSHOT_COLUMNS}, "
    + ", ".join(
        f'ARRAY(SELECT DISTINCT "{column}" FROM "{table}" WHERE "{column}" IS NOT NULL)'
        for table, column in SOURCES.values()
    )
    + " FROM pg_current_snapshot() AS s"
)
MAX_SPAN_WORDS = 16


class Vocabulary:
    """The six lists (and a set of each, for lookups), replaced whole on every reload."""

    def __init__(self, database_url: str) -> None:
        self._conn = psycopg.connect(database_url, autocommit=True, connect_timeout=10)
        self._lock = threading.Lock()  # one load at a time on the one connection
        self.state: tuple[int, dict[str, list[str]], dict[str, frozenset[str]]] | None = None
        self.loads = 0

    def reload(self) -> None:
        with self._lock:
            row = self._conn.execute(LOAD_SQL).fetchone()
            assert row is not None
            xmax, in_progress, *lists = row
            terms = dict(zip(SOURCES, lists, strict=True))
            self.state = (
                pack(int(xmax), int(in_progress)),
                terms,
                {name: frozenset(values) for name, values in terms.items()},
            )
            self.loads += 1


def listen(vocabulary: Vocabulary, redis_url: str) -> None:
    client: redis.Redis = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    pubsub.subscribe(CHANNEL)
    for message in pubsub.listen():
        if message["type"] == "message":
            vocabulary.reload()


def create_app(vocabulary: Vocabulary) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    def ready() -> JSONResponse:
        state = vocabulary.state
        if state is None:
            return JSONResponse({"ready": False}, status_code=503)
        body = {"ready": True, "version": state[0], "database_loads": vocabulary.loads}
        return JSONResponse(body)

    @app.get("/api/vocabulary")
    def lists() -> JSONResponse:
        state = vocabulary.state
        if state is None:
            return JSONResponse({"detail": "not loaded"}, status_code=503)
        return JSONResponse({**state[1], "meta": {"version": state[0]}})

    @app.post("/api/vocabulary/match")
    async def match(request: Request) -> JSONResponse:
        state = vocabulary.state
        if state is None:
            return JSONResponse({"detail": "not loaded"}, status_code=503)
        body: Any = await request.json()
        words = str(body["text"]).split()
        fields = body.get("fields") or list(SOURCES)
        found: list[dict[str, str]] = []
        for start in range(len(words)):
            for end in range(start + 1, min(len(words), start + MAX_SPAN_WORDS) + 1):
                span = " ".join(words[start:end])
                found.extend(
                    {"field": name, "value": span} for name in fields if span in state[2][name]
                )
        return JSONResponse({"matches": found, "version": state[0]})

    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    vocabulary = Vocabulary(os.environ["DATABASE_URL"])
    # The design document's startup: start the listener, then the initial refresh.
    threading.Thread(
        target=listen, args=(vocabulary, os.environ["REDIS_URL"]), name="listener", daemon=True
    ).start()
    vocabulary.reload()
    uvicorn.run(create_app(vocabulary), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
