"""POST /api/vocabulary/match in-process (lifespan included), on real PostgreSQL and Redis.

End to end: a project inserted with SQL is matched through the endpoint within a second of its
commit (bridge -> Redis -> this instance's cache -> the matcher's index), and a deleted one stops
matching. Waits poll with a deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.fixtures_app import FAST_ENV, execute, make_settings
from tests.test_api import running_client
from tests.waiting import wait_until, wait_until_async
from vocabsync.config import Settings
from vocabsync.local.demo import DemoStack
from vocabsync.local.servers import LocalRedis
from vocabsync.main import create_app
from vocabsync.matching import MAX_TEXT_LENGTH, MatchSettings
from vocabsync.services.entity_matcher import EntityMatcher
from vocabsync.services.redis_vocabulary import RedisVocabularyCache
from vocabsync.services.vocabulary_sync_bridge import VocabularySyncBridge

FRESHNESS_S = 1.0


def seed(db_url: str) -> None:
    execute(
        db_url,
        """INSERT INTO "Project"(project_name, location) VALUES
           ('Marikina Riverbanks Development Phase 2', 'Marikina City'),
           ('Pasig Bridge Rehabilitation', 'Pasig')""",
    )
    execute(db_url, """INSERT INTO "ExpensesColumn"(column_name) VALUES ('Diesel'), ('Cement')""")
    execute(db_url, """INSERT INTO "CashFlowColumn"(column_name) VALUES ('Diesel')""")
    execute(db_url, """INSERT INTO "Expenses"(file_name) VALUES ('Expenses_Q1_2024.xlsx')""")


@pytest.fixture
async def client(settings: Settings, db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    seed(db_url)
    async with running_client(create_app(settings)) as c:
        yield c


async def match(client: httpx.AsyncClient, text: str, **extra: Any) -> dict[str, Any]:
    response = await client.post("/api/vocabulary/match", json={"text": text, **extra})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def values(body: dict[str, Any]) -> set[str]:
    return {m["value"] for m in body["matches"]}


async def test_match_answers_with_fields_spans_scores_and_version(
    client: httpx.AsyncClient,
) -> None:
    text = "How much DIESEL did we use on marikina riverbank ph 2?"
    body = await match(client, text)
    ready = (await client.get("/ready")).json()
    assert body["version"] == ready["version"] > 0
    matches = body["matches"]
    assert [(m["field"], m["value"]) for m in matches] == [
        ("expense_categories", "Diesel"),
        ("cashflow_categories", "Diesel"),
        ("projects", "Marikina Riverbanks Development Phase 2"),
    ]
    for m in matches:
        assert text[m["start"] : m["end"]] == m["text"]
    assert matches[0]["score"] == 1.0
    assert 0 < matches[2]["score"] < 1
    assert matches[2]["text"] == "marikina riverbank ph 2"


async def test_fields_and_limit(client: httpx.AsyncClient) -> None:
    text = "diesel for Pasig Bridge Rehabilitation"
    only = await match(client, text, fields=["projects"])
    assert [m["field"] for m in only["matches"]] == ["projects"]
    assert len((await match(client, text, limit=1))["matches"]) == 1
    assert len((await match(client, text, limit=1.0))["matches"]) == 1  # JSON: 1.0 is 1
    assert (await match(client, "what is the weather like"))["matches"] == []


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"text": ""}, "at least 1 character"),
        ({"text": "x" * (MAX_TEXT_LENGTH + 1)}, f"at most {MAX_TEXT_LENGTH} characters"),
        ({"text": "diesel", "fields": ["projects", "budgets"]}, "'projects'"),
        ({"text": "diesel", "fields": "projects"}, "valid list"),
        ({"text": "diesel", "fields": []}, "at least 1 item"),
        ({"text": 42}, "valid string"),
        ({"text": "diesel", "limit": "5"}, "valid integer"),
        ({"text": "diesel", "limit": 0}, "greater than or equal to 1"),
        ({"text": "diesel", "limit": 2.5}, "fractional part"),
        ({"text": "diesel", "limit": True}, "valid integer"),
        ({"text": "diesel", "field": ["projects"]}, "Extra inputs are not permitted"),
        ({}, "Field required"),
    ],
)
async def test_bad_requests_are_422_with_a_clear_message(
    client: httpx.AsyncClient, body: dict[str, Any], complaint: str
) -> None:
    response = await client.post("/api/vocabulary/match", json=body)
    assert response.status_code == 422
    assert complaint in response.text


async def test_a_new_project_is_matchable_within_a_second_and_a_deleted_one_stops(
    bridge: VocabularySyncBridge, client: httpx.AsyncClient, db_url: str
) -> None:
    name = "Taguig Lakeside Seawall Package B"
    question = "who is the engineer of the taguig lakeside seawall pkg b?"
    assert name not in values(await match(client, question))

    execute(db_url, 'INSERT INTO "Project"(project_name) VALUES (%s)', (name,))
    committed = time.perf_counter()

    async def found() -> bool:
        return name in values(await match(client, question))

    await wait_until_async(found, timeout=FRESHNESS_S, interval=0.005, message="new project")
    assert time.perf_counter() - committed < FRESHNESS_S

    execute(db_url, 'DELETE FROM "Project" WHERE project_name = %s', (name,))

    async def gone() -> bool:
        return name not in values(await match(client, question))

    await wait_until_async(gone, timeout=FRESHNESS_S, interval=0.005, message="deleted project")


async def test_503_without_any_vocabulary() -> None:
    settings = make_settings("postgresql://postgres@127.0.0.1:1/none", "redis://127.0.0.1:1/0")
    async with running_client(create_app(settings)) as client:
        response = await client.post("/api/vocabulary/match", json={"text": "diesel"})
        assert response.status_code == 503
        assert "No vocabulary" in response.json()["detail"]


async def test_lifespan_leaves_no_worker_thread_behind(settings: Settings, db_url: str) -> None:
    seed(db_url)
    app = create_app(settings)
    async with running_client(app) as client:
        assert values(await match(client, "pasig bridge rehab")) == {"Pasig Bridge Rehabilitation"}
        assert app.state.entity_matcher.ready
    assert [t for t in threading.enumerate() if t.name == "vocabsync-match-index"] == []


async def test_python_api_on_a_running_cache(
    cache: RedisVocabularyCache, bridge: VocabularySyncBridge, db_url: str
) -> None:
    matcher = EntityMatcher()
    matcher.attach(cache)
    matcher.start()
    try:
        assert await matcher.wait_ready(10)
        execute(db_url, """INSERT INTO "CashFlowColumn"(column_name) VALUES ('Progress Billing')""")
        await wait_until_async(
            lambda: (
                [m.value for m in matcher.match_entities("progress billings")]
                == ["Progress Billing"]
            ),
            timeout=5,
        )
        [m] = matcher.match_entities("progress billings", fields=["cashflow_categories"])
        assert (m.field, m.start, m.end) == ("cashflow_categories", 0, 17)
        assert matcher.match("progress billing").version == cache.snapshot.version
        with pytest.raises(ValueError, match="unknown fields"):
            matcher.match_entities("x", fields=["budgets"])
        with pytest.raises(ValueError, match="longer than"):
            matcher.match_entities("x" * (MAX_TEXT_LENGTH + 1))
    finally:
        matcher.close()


def test_openapi_documents_the_match_endpoint(settings: Settings) -> None:
    schema = create_app(settings).openapi()
    operation = schema["paths"]["/api/vocabulary/match"]["post"]
    assert {"200", "422", "503"} <= set(operation["responses"])
    request = schema["components"]["schemas"]["MatchRequest"]
    assert request["properties"]["text"]["maxLength"] == MAX_TEXT_LENGTH
    assert request["properties"]["text"]["minLength"] == 1
    item = schema["components"]["schemas"]["MatchItem"]
    assert set(item["properties"]) == {"field", "value", "text", "start", "end", "score"}


@pytest.mark.slow
def test_both_served_instances_match_a_new_project_within_a_second(
    db_url: str, redis_server: LocalRedis
) -> None:
    """Real ``vocabsync serve`` and ``vocabsync bridge`` processes (the README's deployment)."""
    seed(db_url)
    name = "Cainta Floodway Pumping Station Lot 4"
    question = {"text": "status of the cainta floodway pumping stn lot 4 please"}
    with (
        DemoStack(
            make_settings(db_url, redis_server.url), instances=2, extra_env=FAST_ENV
        ) as stack,
        httpx.Client(timeout=5.0) as http,
    ):

        def matched_everywhere(present: bool) -> bool:
            for url in stack.instance_urls:
                response = http.post(f"{url}/api/vocabulary/match", json=question)
                found = name in {m["value"] for m in response.json()["matches"]}
                if response.status_code != 200 or found != present:
                    return False
            return True

        assert matched_everywhere(present=False)
        stack.execute('INSERT INTO "Project"(project_name) VALUES (%s)', (name,))
        wait_until(lambda: matched_everywhere(True), timeout=FRESHNESS_S, interval=0.005)
        stack.execute('DELETE FROM "Project" WHERE project_name = %s', (name,))
        wait_until(lambda: matched_everywhere(False), timeout=FRESHNESS_S, interval=0.005)


async def test_matching_can_be_turned_off(settings: Settings, db_url: str) -> None:
    seed(db_url)
    off = EntityMatcher(MatchSettings(_env_file=None, enabled=False))  # type: ignore[call-arg]
    app = create_app(settings, matcher=off)
    async with running_client(app) as client:
        response = await client.post("/api/vocabulary/match", json={"text": "diesel"})
        assert response.status_code == 503
        assert "disabled" in response.json()["detail"]
        assert (await client.get("/api/vocabulary")).status_code == 200
    assert not off.ready
