"""Reads cost nothing per call: one immutable object per version, bytes encoded once per version,
and pollers that send ``If-None-Match`` get a 304 until the vocabulary changes."""

from __future__ import annotations

import gc
import json
import random
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from hypothesis import given, strategies as st

from tests.fixtures_app import execute, expected_vocabulary
from tests.test_api import running_client
from tests.waiting import wait_until_async
from vocabsync.config import Settings
from vocabsync.heap import PARK_FROM_TERMS
from vocabsync.main import create_app
from vocabsync.services.redis_vocabulary import RedisVocabularyCache
from vocabsync.services.vocabulary_state import VocabularyState
from vocabsync.services.vocabulary_sync_bridge import VocabularySyncBridge
from vocabsync.sorted_terms import CHUNK_TERMS, SortedTerms
from vocabsync.vocabulary import FOLD_AT, Snapshot, TermSet


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
changes = st.tuples(st.sets(words, max_size=8), st.sets(words, max_size=8))


@given(st.sets(words, max_size=30), st.lists(changes, max_size=6), st.integers(1, 4))
def test_a_changed_order_is_the_order_of_a_fresh_sort(
    base: set[str], steps: list[tuple[set[str], set[str]]], chunk_terms: int
) -> None:
    """Through any sequence of changes, with chunks small enough to split, empty and merge,
    the kept order and its JSON are exactly what sorting and encoding from scratch give."""
    order = SortedTerms.from_sorted(sorted(base), chunk_terms)
    current = set(base)
    for added, removed in steps:
        new, gone = sorted(added - current), sorted((removed - added) & current)
        parent_terms = tuple(order)
        order = order.changed(new, gone)
        assert tuple(SortedTerms.from_sorted(parent_terms, chunk_terms)) == parent_terms
        current = (current | set(new)) - set(gone)
        assert order.flat() == tuple(sorted(current))
        encoded = b"[" + b",".join(chunk.json() for chunk in order.chunks) + b"]"
        assert (
            encoded
            == json.dumps(sorted(current), ensure_ascii=False, separators=(",", ":")).encode()
        )


@given(st.sets(words, max_size=30), st.sets(words, max_size=8), st.sets(words, max_size=8))
def test_a_changed_term_set_sorts_like_a_fresh_one(
    base: set[str], added: set[str], removed: set[str]
) -> None:
    parent = TermSet(base)
    parent.sorted()  # sorted once: the child carries the order on at the cost of the change
    child = parent.changed(sorted(added), sorted(removed))
    expected = (base - removed) | added if not (added & removed) else None
    if expected is not None:
        assert child.sorted() == tuple(sorted(expected))
    assert child.sorted() == tuple(sorted(TermSet(set(child)).sorted()))
    assert (
        child.to_json()
        == json.dumps(list(child.sorted()), ensure_ascii=False, separators=(",", ":")).encode()
    )
    assert parent.sorted() == tuple(sorted(base)), "the parent is untouched"


@pytest.mark.parametrize("size", [10_000, 100_000])
def test_re_encoding_a_changed_field_costs_the_change_not_the_field(size: int) -> None:
    """After one encoding, a change of three terms re-encodes at most three chunks, at 10k and at
    100k terms alike (the bridge rewrites the seed key this way at a million terms)."""
    field = TermSet(f"project {n:07d}" for n in range(size))
    field.to_json()
    child = field.changed(["project 0000500x", "zzz new"], ["project 0000007"])
    fresh = [chunk for chunk in child.order().chunks if not chunk.encoded]
    assert 1 <= len(fresh) <= 3
    assert sum(len(chunk.terms) for chunk in fresh) <= 3 * CHUNK_TERMS
    assert child.to_json() == json.dumps(sorted(child.unordered()), separators=(",", ":")).encode()


def test_a_term_set_stays_exact_through_thousands_of_changes_and_folds() -> None:
    """Thousands of small changes (more than a fold's worth): membership, size, order and JSON
    always match a plain set, and the changes get folded into the base instead of piling up."""
    rng = random.Random(7)
    pool = [f"term {n:05d}" for n in range(6000)]
    expected = set(pool[:3000])
    terms = TermSet(expected)
    terms.sorted()
    for step in range(1, 3001):
        added, removed = set(rng.sample(pool, 2)), set(rng.sample(pool, 2))
        terms = terms.changed(sorted(added), sorted(removed))
        expected = (expected - removed) | added
        probe = rng.choice(pool)
        assert (probe in terms) == (probe in expected)
        assert len(terms) == len(expected)
        if step % 500 == 0:
            assert set(terms.unordered()) == expected
            assert terms.sorted() == tuple(sorted(expected))
            assert json.loads(terms.to_json()) == sorted(expected)
    assert len(terms._added) + len(terms._removed) <= FOLD_AT, "changes were folded in"


@pytest.mark.parametrize("bulk", [10, 5000])
def test_a_large_change_gives_the_same_set_as_small_ones(bulk: int) -> None:
    """A bulk import takes the rebuild path, term-by-term changes the overlays: same result,
    with duplicates and terms both added and removed."""
    base = {f"old {n:05d}" for n in range(4000)}
    added = [f"new {n:05d}" for n in range(bulk)] + ["old 00001", "new 00000", "both"]
    removed = [f"old {n:05d}" for n in range(0, 8000, 3)] + ["old 00003", "both"]
    parent = TermSet(base)
    parent.sorted()
    child = parent.changed(added, removed)
    expected = (base - set(removed)) | set(added)
    assert set(child.unordered()) == expected
    assert len(child) == len(expected)
    assert child.sorted() == tuple(sorted(expected))
    assert child == TermSet(expected)


@pytest.fixture
def unfrozen_heap() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_a_large_loaded_vocabulary_is_out_of_the_collectors_full_passes(
    unfrozen_heap: None,
) -> None:
    """At a million terms a full collection walked the vocabulary for ~200 ms, a pause every few
    thousand deltas; once adopted, a large state is parked where collections do not look, and a
    small one (cheap to walk) is left alone."""
    small = Snapshot.from_lists({"projects": [f"small {n}" for n in range(100)]}, version=1)
    state = VocabularyState()
    assert state.adopt(small, "1-0", "redis")
    tracked = {id(o) for o in gc.get_objects()}
    assert id(small.get("projects")._base) in tracked, "a small vocabulary is not worth a pass"

    names = [f"project {n}" for n in range(PARK_FROM_TERMS)]
    large = Snapshot.from_lists({"projects": names}, version=2)
    assert state.adopt(large, "2-0", "redis")
    tracked = {id(o) for o in gc.get_objects()}
    assert id(large.get("projects")._base) not in tracked
    assert gc.get_freeze_count() > 0
