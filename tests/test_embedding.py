"""The public embedding API: ``VocabSync`` and ``vocabsync.fastapi``, as an AI server uses them.

Against real PostgreSQL, Redis and a bridge (in this event loop): start and stop, read, match, hear
about new versions; the two-line FastAPI integration, alone and combined with an app's own
lifespan. And importing the package creates nothing: a child interpreter imports it with settings
that would not even validate and database/Redis URLs pointing at a socket this test watches.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.fixtures_app import execute, make_settings
from tests.test_api import running_client
from tests.waiting import wait_until_async
from vocabsync import IndexNotReadyError, Match, VocabSync, VocabularyUpdate
from vocabsync.api.deps import NotSetUpError
from vocabsync.config import Settings
from vocabsync.fastapi import VocabSyncDep
from vocabsync.services.vocabulary_sync_bridge import VocabularySyncBridge

REPO = Path(__file__).resolve().parent.parent

MARIKINA = "Marikina Riverbanks Development Phase 2"
CAINTA = "Cainta Floodway Pumping Station Lot 4"


def seed(db_url: str) -> None:
    execute(
        db_url,
        'INSERT INTO "Project"(project_name, location) VALUES (%s, %s)',
        (MARIKINA, "Marikina City"),
    )
    execute(db_url, """INSERT INTO "ExpensesColumn"(column_name) VALUES ('Diesel')""")


def names(matches: list[Match]) -> set[str]:
    return {m.value for m in matches}


def leftovers() -> dict[str, list[str]]:
    """The instance side's threads and tasks still alive (none once it stopped; the bridge
    fixture's own tasks do not count)."""

    def ours(name: str) -> bool:
        return name.startswith("vocabsync") and not name.startswith("vocabsync-bridge")

    return {
        "threads": [t.name for t in threading.enumerate() if ours(t.name)],
        "tasks": [t.get_name() for t in asyncio.all_tasks() if ours(t.get_name()) and not t.done()],
    }


# --- importing creates nothing ----------------------------------------------------------------

CHILD = r"""
import json, socket, sys, threading
import pydantic_settings

settings_built = []
_init = pydantic_settings.BaseSettings.__init__
def _recording_init(self, *args, **kwargs):
    settings_built.append(type(self).__name__)
    _init(self, *args, **kwargs)
pydantic_settings.BaseSettings.__init__ = _recording_init

connects = []
_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
def _recording_connect(self, address):
    connects.append(repr(address))
    return _connect(self, address)
def _recording_connect_ex(self, address):
    connects.append(repr(address))
    return _connect_ex(self, address)
socket.socket.connect, socket.socket.connect_ex = _recording_connect, _recording_connect_ex

from fastapi import FastAPI
import vocabsync
import vocabsync.fastapi
public = {name: getattr(vocabsync, name) for name in vocabsync.__all__}
vocab = vocabsync.VocabSync.from_settings()
host = FastAPI()
host.include_router(vocab.router)
paths = sorted(host.openapi()["paths"])
import vocabsync.main
app_built_at_import = "app" in vars(vocabsync.main)
main_paths = sorted(vocabsync.main.app.openapi()["paths"])
print(json.dumps({
    "settings_built": settings_built,
    "connects": connects,
    "threads": [t.name for t in threading.enumerate()],
    "public": sorted(public),
    "router_paths": paths,
    "main_app_built_at_import": app_built_at_import,
    "main_paths": main_paths,
}))
"""


@pytest.fixture
def watched_port() -> Iterator[socket.socket]:
    """A listening socket: any connection made to it stays queued for the test to find."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    try:
        yield listener
    finally:
        listener.close()


def test_importing_reads_no_settings_and_opens_no_connection(
    watched_port: socket.socket, tmp_path: Path
) -> None:
    port = watched_port.getsockname()[1]
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("VOCABSYNC_", "SUPABASE_", "REDIS_", "DATABASE_"))
    }
    env.update(
        {
            "DATABASE_URL": f"postgresql://user:secret@127.0.0.1:{port}/db",
            "REDIS_URL": f"redis://127.0.0.1:{port}/0",
            # Reading either settings class would fail on these.
            "VOCABSYNC_NETWORK_TIMEOUT": "not-a-number",
            "VOCABSYNC_MATCH_MAX_TYPOS": "not-a-number",
            "PYTHONPATH": str(REPO),
        }
    )
    result = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=tmp_path,  # no .env file here
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen: dict[str, Any] = json.loads(result.stdout)
    assert seen["settings_built"] == []
    assert seen["connects"] == []
    assert seen["threads"] == ["MainThread"]
    assert not seen["main_app_built_at_import"]
    endpoints = {
        "/api/vocabulary",
        "/api/vocabulary/refresh",
        "/api/vocabulary/match",
        "/health",
        "/ready",
        "/metrics",
    }
    assert endpoints <= set(seen["router_paths"])
    assert endpoints <= set(seen["main_paths"])
    assert {"VocabSync", "Settings", "Match", "VocabularyUpdate"} <= set(seen["public"])
    with pytest.raises(BlockingIOError):  # nobody knocked
        watched_port.accept()


# --- the Python API -----------------------------------------------------------------------------


async def test_start_read_match_hear_new_versions_stop(
    settings: Settings,
    db_url: str,
    bridge: VocabularySyncBridge,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seed(db_url)
    vocab = VocabSync.from_settings(settings)
    updates: list[VocabularyUpdate] = []

    def broken(update: VocabularyUpdate) -> None:
        raise RuntimeError("a callback with a bug")

    vocab.on_update(broken)
    unsubscribe = vocab.on_update(updates.append)
    with pytest.raises(IndexNotReadyError):
        vocab.match("diesel")
    assert not vocab.running

    async with vocab:
        assert vocab.running
        assert vocab.ready
        assert vocab.get_vocabulary()["projects"] == [MARIKINA]
        assert vocab.counts()["projects"] == 1
        question = "diesel for marikina riverbanks ph 2"
        [found] = vocab.match(question, fields=["projects"])
        assert (found.field, found.value) == ("projects", MARIKINA)
        assert question[found.start : found.end] == found.text
        assert names(vocab.match(question)) == {MARIKINA, "Diesel"}
        first = vocab.version
        assert first > 0

        execute(db_url, 'INSERT INTO "Project"(project_name) VALUES (%s)', (CAINTA,))
        question = "status of the cainta floodway pumping stn lot 4"
        assert CAINTA not in names(vocab.match(question))
        await wait_until_async(lambda: CAINTA in names(vocab.match(question)), timeout=5)
        update = await wait_until_async(
            lambda: next((u for u in updates if u.version > first), None), timeout=5
        )
        assert update.previous_version >= first
        assert update.counts["projects"] == 2
        assert updates[-1].version == vocab.version
        assert "update_callback_failed" in {getattr(r, "action", "") for r in caplog.records}

        unsubscribe()
        heard = len(updates)
        execute(db_url, """INSERT INTO "ExpensesColumn"(column_name) VALUES ('Cement')""")
        before = vocab.version
        refreshed = await vocab.refresh()
        assert refreshed.version > before == refreshed.previous_version
        assert refreshed.counts["expense_categories"] == 2
        assert vocab.get_vocabulary()["expense_categories"] == ["Cement", "Diesel"]
        assert len(updates) == heard  # unsubscribed

        async with vocab:  # nesting shares the running instance
            assert vocab.running
        assert vocab.running
    assert not vocab.running
    assert leftovers() == {"threads": [], "tasks": []}
    # What was loaded stays readable after stop.
    assert CAINTA in vocab.get_vocabulary()["projects"]


async def test_starts_without_services_and_stops_cleanly() -> None:
    """Unreachable PostgreSQL and Redis: start returns (not ready), stop leaves nothing behind."""
    vocab = VocabSync.from_settings(
        make_settings("postgresql://postgres@127.0.0.1:1/none", "redis://127.0.0.1:1/0")
    )
    await vocab.start()
    try:
        assert vocab.running
        assert not vocab.ready
        assert vocab.version == 0
        assert vocab.status()["redis"] == "unavailable"
        with pytest.raises(IndexNotReadyError):
            vocab.match("diesel")
    finally:
        await vocab.stop()
    await vocab.stop()  # idempotent
    assert leftovers() == {"threads": [], "tasks": []}


# --- FastAPI --------------------------------------------------------------------------------------


async def test_two_lines_give_an_app_the_endpoints(
    settings: Settings, db_url: str, bridge: VocabularySyncBridge
) -> None:
    seed(db_url)
    vocab = VocabSync.from_settings(settings)
    app = FastAPI()
    app.include_router(vocab.router)

    @app.get("/mine")
    async def mine(v: VocabSyncDep) -> dict[str, Any]:
        return {"version": v.version, "projects": list(v.get_vocabulary()["projects"])}

    async with running_client(app) as client:
        assert vocab.running
        for path in ("/api/vocabulary", "/health", "/ready", "/metrics"):
            response = await client.get(path)
            assert response.status_code == 200, (path, response.text)
        assert "vocabsync_snapshot_version" in (await client.get("/metrics")).text
        body = (await client.get("/api/vocabulary")).json()
        assert body["projects"] == [MARIKINA]
        matched = await client.post("/api/vocabulary/match", json={"text": "marikina riverbanks"})
        assert [m["value"] for m in matched.json()["matches"]] == [MARIKINA]
        refreshed = await client.post("/api/vocabulary/refresh")
        assert refreshed.status_code == 200
        assert refreshed.json()["success"] is True
        mine_body = (await client.get("/mine")).json()
        assert mine_body == {"version": vocab.version, "projects": [MARIKINA]}
    assert not vocab.running
    assert leftovers() == {"threads": [], "tasks": []}


async def test_own_lifespan_can_start_vocabsync_first(settings: Settings, db_url: str) -> None:
    """The app's lifespan enters ``vocab.lifespan(app)``; the router's then adds nothing."""
    seed(db_url)
    vocab = VocabSync.from_settings(settings)
    seen: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with vocab.lifespan(app):
            seen["startup"] = names(vocab.match("marikina riverbanks"))
            yield
            seen["before shutdown"] = vocab.running
        seen["after shutdown"] = vocab.running

    app = FastAPI(lifespan=lifespan)
    app.include_router(vocab.router)
    async with running_client(app) as client:
        listeners = [t for t in asyncio.all_tasks() if t.get_name() == "vocabsync-listener"]
        assert len(listeners) == 1
        assert (await client.get("/ready")).status_code == 200
    assert seen == {"startup": {MARIKINA}, "before shutdown": True, "after shutdown": False}
    assert leftovers() == {"threads": [], "tasks": []}


async def test_one_vocabsync_per_app(settings: Settings) -> None:
    first, second = VocabSync.from_settings(settings), VocabSync.from_settings(settings)
    app = FastAPI()
    app.include_router(first.router)
    app.include_router(second.router, prefix="/second")
    with pytest.raises(RuntimeError, match="another VocabSync"):
        async with running_client(app):
            pass
    assert not first.running
    assert not second.running
    assert leftovers() == {"threads": [], "tasks": []}


async def test_routes_without_the_lifespan_say_how_to_set_up() -> None:
    """A server that skips lifespan events gets a message naming the fix, not an AttributeError."""
    vocab = VocabSync.from_settings(
        make_settings("postgresql://postgres@127.0.0.1:1/none", "redis://127.0.0.1:1/0")
    )
    app = FastAPI()
    app.include_router(vocab.router)
    transport = httpx.ASGITransport(app=app)  # runs no lifespan
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        with pytest.raises(NotSetUpError, match=r"include `vocab.router`"):
            await client.get("/api/vocabulary")
    assert not vocab.running


def test_openapi_lists_the_endpoints_once(settings: Settings) -> None:
    vocab = VocabSync.from_settings(settings)
    app = FastAPI()
    app.include_router(vocab.router)
    paths = app.openapi()["paths"]
    assert set(paths) == {
        "/api/vocabulary",
        "/api/vocabulary/refresh",
        "/api/vocabulary/match",
        "/health",
        "/ready",
        "/metrics",
    }
    assert logging.getLogger("vocabsync").handlers == []  # the library configures no logging
