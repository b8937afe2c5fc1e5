"""Reads cost nothing per call: one immutable object per version, bytes encoded once per version,
and pollers that send ``If-None-Match`` get a 304 until the vocabulary changes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import given, strategies as st

from tests.fixtures_app import execute, expected_vocabulary
from tests.test_api import running_client
from tests.waiting import wait_until_async
from vocabsync.config import Settings
from vocabsync.main import create_app
from vocabsync.services.redis_vocabulary import RedisVocabularyCache
from vocabsync.services.vocabulary_sync_bridge import VocabularySyncBridge
from vocabsync.vocabulary import TermSet


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_client(create_app(settings)) as c:
        yield c


async def test_get_vocabulary_hands_out_one_immutable_object_per_version(
    db_url: str, bridge: VocabularySyncBridge, cache: RedisVocabularyCache
) -> None:
    first = cache.get_vocabulary()
    assert cache.get_vocabulary() is first, "no copy per call"
    before = first.as_lists()
    execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('Read Tower')""")
    await wait_until_async(
        lambda: "Read Tower" in cache.get_vocabulary()["projects"], message="change applied"
    )
    assert cache.get_vocabulary() is not first
    assert first.as_lists() == before, "a version handed out never changes"
    assert cache.get_vocabulary() == expected_vocabulary(db_url)


async def test_etag_and_not_modified(
    client: httpx.AsyncClient, db_url: str, bridge: VocabularySyncBridge
) -> None:
    first = await client.get("/api/vocabulary")
    assert first.status_code == 200
    etag = first.headers["etag"]
    again = await client.get("/api/vocabulary", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert (await client.get("/api/vocabulary")).content == first.content

    execute(db_url, """INSERT INTO "ExpensesColumn"(column_name) VALUES ('Tagged')""")

    async def changed() -> bool:
        response = await client.get("/api/vocabulary", headers={"If-None-Match": etag})
        return response.status_code == 200 and "Tagged" in response.json()["expense_categories"]

    await wait_until_async(changed, message="a new version answers 200")
    latest = await client.get("/api/vocabulary")
    assert latest.headers["etag"] != etag
    assert latest.json()["expense_categories"] == expected_vocabulary(db_url)["expense_categories"]
    listed = await client.get(
        "/api/vocabulary", headers={"If-None-Match": f'"other", {latest.headers["etag"]}'}
    )
    assert listed.status_code == 304


words = st.text(alphabet="abcXYZé ", min_size=1, max_size=6)


@given(st.sets(words, max_size=30), st.sets(words, max_size=8), st.sets(words, max_size=8))
def test_a_changed_term_set_sorts_like_a_fresh_one(
    base: set[str], added: set[str], removed: set[str]
) -> None:
    parent = TermSet(base)
    parent.sorted()  # sorted once: the child re-sorts by insertion from it
    child = parent.changed(sorted(added), sorted(removed))
    expected = (base - removed) | added if not (added & removed) else None
    if expected is not None:
        assert child.sorted() == tuple(sorted(expected))
    assert child.sorted() == tuple(sorted(TermSet(set(child)).sorted()))
    assert parent.sorted() == tuple(sorted(base)), "the parent is untouched"
