"""The HTTP API in-process (lifespan included), against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import psycopg
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from tests.fixtures_app import derive, execute, expected_vocabulary, make_settings
from vocabsync.config import Settings
from vocabsync.local.servers import LocalRedis
from vocabsync.main import create_app
from vocabsync.vocabulary import FIELDS, Snapshot

COUNT_KEYS = [  # the design document's order, kept byte for byte
    "projects",
    "project_locations",
    "expense_categories",
    "cashflow_categories",
    "expense_files",
    "cashflow_files",
]


@asynccontextmanager
async def running_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_client(create_app(settings)) as c:
        yield c


async def test_get_vocabulary_returns_six_lists_and_meta(
    client: httpx.AsyncClient, db_url: str
) -> None:
    execute(db_url, """INSERT INTO "Project"(project_name, location) VALUES ('Alpha', 'Pasig')""")
    await client.post("/api/vocabulary/refresh")
    response = await client.get("/api/vocabulary")
    assert response.status_code == 200
    body = response.json()
    meta = body.pop("meta")
    assert body == expected_vocabulary(db_url)
    assert meta["source"] == "memory"
    assert meta["version"] > 0
    assert meta["refreshed_at"]


async def test_health_and_ready(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True
    assert body["redis"] == "connected"
    assert body["listener"] == "running"
    assert body["database"] == "ok"
    assert body["snapshot_age_seconds"] >= 0


async def test_ready_is_503_without_any_snapshot() -> None:
    settings = make_settings("postgresql://postgres@127.0.0.1:1/none", "redis://127.0.0.1:1/0")
    async with running_client(create_app(settings)) as client:
        ready = await client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["redis"] == "unavailable"
        assert ready.json()["database"] == "unavailable"
        assert (await client.get("/health")).status_code == 200
        response = await client.get("/api/vocabulary")
        assert response.status_code == 503
        assert "unreachable" in response.json()["detail"]


@hsettings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    projects=st.lists(st.text(min_size=1, max_size=12).filter(str.strip), max_size=4),
    categories=st.lists(st.text(min_size=1, max_size=12).filter(str.strip), max_size=4),
)
async def test_manual_refresh_updates_cache_and_redis(
    client: httpx.AsyncClient,
    settings: Settings,
    db_url: str,
    projects: list[str],
    categories: list[str],
) -> None:
    """Feature: real-time-vocabulary-sync, Property 6: Manual refresh endpoint triggers update."""
    execute(db_url, 'TRUNCATE "Project", "ExpensesColumn" CASCADE')
    for name in projects:
        execute(
            db_url, 'INSERT INTO "Project"(project_name) VALUES (%s)', (name.replace("\x00", ""),)
        )
    for name in categories:
        execute(
            db_url,
            'INSERT INTO "ExpensesColumn"(column_name) VALUES (%s)',
            (name.replace("\x00", ""),),
        )
    response = await client.post("/api/vocabulary/refresh")
    assert response.status_code == 200
    body = response.json()
    expected = expected_vocabulary(db_url)
    assert body["success"] is True
    assert body["message"] == "Vocabulary cache refreshed successfully"
    assert list(body["vocabulary_counts"]) == COUNT_KEYS
    assert body["vocabulary_counts"] == {k: len(v) for k, v in expected.items()}
    redis = aioredis.Redis.from_url(settings.redis_connection_url)
    try:
        stored = Snapshot.from_json(await redis.get(settings.redis_key))
    finally:
        await redis.aclose()
    assert stored.as_lists() == expected


async def test_manual_refresh_is_logged(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        assert (await client.post("/api/vocabulary/refresh")).status_code == 200
    assert "manual vocabulary refresh requested" in caplog.text
    assert "vocabulary refreshed (manual)" in caplog.text


async def test_manual_refresh_returns_500_when_redis_is_down(
    client: httpx.AsyncClient, redis_server: LocalRedis
) -> None:
    redis_server.kill()
    response = await client.post("/api/vocabulary/refresh")
    assert response.status_code == 500
    detail = response.json()["detail"]
    assert detail.startswith("Failed to refresh vocabulary cache:")
    assert "Redis" in detail
    # Reads keep working from the database meanwhile.
    assert (await client.get("/api/vocabulary")).status_code == 200


async def test_manual_refresh_returns_500_when_database_is_down(settings: Settings) -> None:
    broken = derive(settings, database_url="postgresql://postgres:pw-secret-123@127.0.0.1:1/x")
    async with running_client(create_app(broken)) as client:
        response = await client.post("/api/vocabulary/refresh")
        assert response.status_code == 500
        assert "PostgreSQL" in response.json()["detail"]
        assert "pw-secret-123" not in response.text
        assert "pw-secret-123" not in (await client.get("/ready")).text


async def test_first_refresh_after_the_loaders_connection_was_dropped_succeeds(
    client: httpx.AsyncClient, db_url: str
) -> None:
    """The instance keeps its PostgreSQL connection between refreshes; when the server dropped
    it meanwhile (restart, failover, idle timeout, pg_terminate_backend), the next refresh
    reconnects once instead of failing."""
    assert (await client.post("/api/vocabulary/refresh")).status_code == 200
    with psycopg.connect(db_url, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'vocabsync-api' AND datname = current_database()"
        ).fetchall()
        assert killed
        assert all(ok for (ok,) in killed)
        conn.execute("""INSERT INTO "Project"(project_name) VALUES ('After the drop')""")
    response = await client.post("/api/vocabulary/refresh")
    assert response.status_code == 200, response.text
    assert response.json()["vocabulary_counts"]["projects"] == 1
    assert (await client.get("/api/vocabulary")).json()["projects"] == ["After the drop"]


async def test_ten_concurrent_refreshes_all_succeed_and_end_exact(
    client: httpx.AsyncClient, db_url: str
) -> None:
    for index in range(20):
        execute(db_url, 'INSERT INTO "CashFlowColumn"(column_name) VALUES (%s)', (f"C{index}",))
    responses = await asyncio.gather(*(client.post("/api/vocabulary/refresh") for _ in range(10)))
    assert [r.status_code for r in responses] == [200] * 10
    assert all(r.json()["success"] for r in responses)
    body = (await client.get("/api/vocabulary")).json()
    body.pop("meta")
    assert body == expected_vocabulary(db_url)


async def test_startup_without_redis_serves_the_database(settings: Settings, db_url: str) -> None:
    execute(db_url, """INSERT INTO "Expenses"(file_name) VALUES ('jan.xlsx')""")
    no_redis = derive(settings, redis_url="redis://127.0.0.1:1/0", fallback_max_age=0)
    async with running_client(create_app(no_redis)) as client:
        response = await client.get("/api/vocabulary")
        assert response.status_code == 200
        assert response.json()["expense_files"] == ["jan.xlsx"]
        assert response.json()["meta"]["source"] == "database"
        ready = (await client.get("/ready")).json()
        assert ready["redis"] == "unavailable"
        assert ready["fallback"] is True


READ_TOKEN = "read-S3cret-1f2e"


async def test_every_read_endpoint_requires_the_read_token(settings: Settings, db_url: str) -> None:
    """With VOCABSYNC_READ_TOKEN set, nothing that reveals the vocabulary answers without it;
    the probes and metrics stay open for the orchestrator and Prometheus."""
    execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('Marikina Riverbanks')""")
    protected = derive(settings, read_token=READ_TOKEN)
    reads = [
        ("GET", "/api/vocabulary", None),
        ("POST", "/api/vocabulary/match", {"text": "costs of marikina riverbanks"}),
    ]
    async with running_client(create_app(protected)) as client:
        for method, path, body in reads:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": READ_TOKEN}):
                response = await client.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.headers["WWW-Authenticate"] == "Bearer"
                assert "Marikina" not in response.text
            good = {"Authorization": f"Bearer {READ_TOKEN}"}
            response = await client.request(method, path, json=body, headers=good)
            assert response.status_code == 200, (method, path, response.text)
            assert "Marikina Riverbanks" in response.text
        for path in ("/health", "/ready", "/metrics"):
            assert (await client.get(path)).status_code == 200, path


def test_openapi_documents_the_endpoints(settings: Settings) -> None:
    schema = create_app(settings).openapi()
    assert "/api/vocabulary" in schema["paths"]
    refresh = schema["paths"]["/api/vocabulary/refresh"]["post"]
    assert "500" in refresh["responses"]
    assert set(FIELDS) <= set(schema["components"]["schemas"]["VocabularyResponse"]["properties"])


def test_openapi_documents_every_error_with_one_model(settings: Settings) -> None:
    """Each route documents the codes it can answer, and every error has the one error model."""
    schema = create_app(settings).openapi()
    codes = {
        (method.upper(), path): set(operation["responses"])
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    }
    assert codes[("GET", "/api/vocabulary")] >= {"200", "401", "503"}
    assert codes[("POST", "/api/vocabulary/match")] >= {"200", "400", "401", "422", "503"}
    assert codes[("POST", "/api/vocabulary/refresh")] >= {"200", "401", "500"}
    assert codes[("GET", "/ready")] >= {"200", "503"}
    errors = [name for name in schema["components"]["schemas"] if "Error" in name]
    assert sorted(errors) == ["ErrorResponse", "HTTPValidationError", "ValidationError"], errors
    for (method, path), _ in codes.items():
        for code, response in schema["paths"][path][method.lower()]["responses"].items():
            if code.startswith(("4", "5")) and code != "422" and path != "/ready":
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/ErrorResponse", (method, path, code)
