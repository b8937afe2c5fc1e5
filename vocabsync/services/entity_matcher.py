"""EntityMatcher: finds vocabulary terms in a question, on an index as fresh as the vocabulary.

The API instance's cache tells the matcher what changed: :meth:`EntityMatcher.apply_delta` after
it applied a delta, :meth:`EntityMatcher.load_full` when it loaded a whole state (startup, after a
gap or reset), or, for a cache that only has snapshots, :meth:`EntityMatcher.on_snapshot` (a
snapshot listener). Each call only hands the work to the worker thread, which updates the index in
O(change) (see :mod:`vocabsync.matching.maintainer`). Matching reads the current index; it waits
at most for one small chunk of an update, never for a build.

In-process use::

    from vocabsync.services.entity_matcher import match_entities
    match_entities("how much diesel on marikina riverbanks ph2?")   # -> list[Match]

``POST /api/vocabulary/match`` answers with the same function.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vocabsync.matching.abbreviations import Abbreviations
from vocabsync.matching.maintainer import IndexMaintainer
from vocabsync.matching.model import Match
from vocabsync.matching.settings import MAX_TEXT_LENGTH, MatchSettings
from vocabsync.services.redis_vocabulary import RedisVocabularyCache
from vocabsync.vocabulary import Delta, Snapshot

logger = logging.getLogger(__name__)

__all__ = ["EntityMatcher", "Match", "MatchResult", "entity_matcher", "match_entities"]


class IndexNotReadyError(RuntimeError):
    """No index yet: the instance has no vocabulary, or the first build is still running."""


@dataclass(frozen=True, slots=True)
class MatchResult:
    matches: list[Match]
    version: int  # the snapshot version the index answering was built for


class EntityMatcher:
    """Matching over the live vocabulary of one cache (one per API instance)."""

    def __init__(self, settings: MatchSettings | None = None) -> None:
        self._settings = settings
        self._maintainer: IndexMaintainer | None = None
        self._followed: list[RedisVocabularyCache] = []

    @property
    def settings(self) -> MatchSettings:
        if self._settings is None:
            self._settings = MatchSettings()
        return self._settings

    @property
    def maintainer(self) -> IndexMaintainer:
        if self._maintainer is None:
            table = Abbreviations.build(self.settings.abbreviations)
            self._maintainer = IndexMaintainer(self.settings, table)
        return self._maintainer

    # --- keeping fresh ----------------------------------------------------------------------

    def attach(self, cache: RedisVocabularyCache) -> None:
        """Follow ``cache``: every snapshot it adopts from now on (and the one it holds).

        Idempotent per cache; reads no settings yet (``vocabsync.main`` calls it at import). The
        worker runs between :meth:`start` and :meth:`close`.
        """
        if any(followed is cache for followed in self._followed):
            return
        self._followed.append(cache)
        cache.add_change_listener(self.on_change)
        if cache.snapshot.version:
            self.on_change(Snapshot.empty(), cache.snapshot, None)

    def start(self) -> None:
        """Start the worker thread that keeps the index current."""
        if self.settings.enabled:
            self.maintainer.start()

    def apply_delta(
        self,
        version: int,
        added: Mapping[str, Collection[str]],
        removed: Mapping[str, Collection[str]],
    ) -> None:
        """The vocabulary went to ``version`` by adding and removing these terms (field name ->
        terms). Runs in the event loop: only hands the change over (microseconds). The worker
        reads the collections later, so they must not be changed afterwards."""
        if self.settings.enabled:
            self.maintainer.apply_delta(version, added, removed)

    def load_full(self, version: int, terms: Mapping[str, Iterable[str]]) -> None:
        """The whole vocabulary at ``version`` (startup, after a gap or reset); hands it over.

        The index is built from it (or, when it differs from the current index in few terms,
        the difference is applied); queries keep answering from the current index meanwhile, and
        deltas handed over after this call are applied after it (those for versions up to
        ``version`` are dropped). The collections must not be changed afterwards."""
        if self.settings.enabled:
            self.maintainer.load_full(version, terms)

    def on_change(self, previous: Snapshot, current: Snapshot, delta: Delta | None) -> None:
        """Change listener of the cache: a delta is applied in O(change), a whole new
        vocabulary (startup, a gap in the log, a reset) is loaded. Runs in the event loop and
        only hands over immutable objects."""
        del previous
        if delta is None:
            self.load_full(current.version, current.terms)
            return
        self.apply_delta(
            current.version,
            {name: change.added for name, change in delta.fields.items() if change.added},
            {name: change.removed for name, change in delta.fields.items() if change.removed},
        )

    def on_snapshot(self, previous: Snapshot, current: Snapshot) -> None:
        """Snapshot listener: runs in the event loop, so it only hands the snapshot over."""
        del previous  # the worker diffs against the snapshot its index reflects
        if self.settings.enabled:
            self.maintainer.submit(current)

    async def wait_ready(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until the first index exists (no thread is blocked); for startup only."""
        limit = self.settings.startup_wait_seconds if timeout is None else timeout
        if self.ready or limit <= 0 or not self.settings.enabled:
            return self.ready
        loop = asyncio.get_running_loop()
        built = asyncio.Event()

        def wake() -> None:  # on the worker thread
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
                loop.call_soon_threadsafe(built.set)

        self.maintainer.on_ready(wake)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(built.wait(), limit)
        return self.ready

    def close(self) -> None:
        """Stop the worker thread (the app's lifespan calls this on shutdown)."""
        if self._maintainer is not None:
            self._maintainer.close()

    # --- matching ---------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._maintainer is not None and self._maintainer.index is not None

    @property
    def version(self) -> int:
        index = self._maintainer.index if self._maintainer is not None else None
        return 0 if index is None else index.version

    def match(
        self, text: str, fields: Sequence[str] | None = None, limit: int | None = None
    ) -> MatchResult:
        """Matches and the version of the index that found them.

        Raises ValueError for bad arguments, IndexNotReadyError before the first index exists.
        """
        _check_arguments(text, fields, limit)
        index = self._maintainer.index if self._maintainer is not None else None
        if index is not None and fields is not None:
            _check_fields(fields, index.fields)
        if index is None and not self.settings.enabled:
            raise IndexNotReadyError("entity matching is disabled (VOCABSYNC_MATCH_ENABLED=false)")
        if index is None:
            raise IndexNotReadyError(
                "the matching index is not built yet (no vocabulary loaded, or the first "
                "build is still running); retry in a moment"
            )
        return MatchResult(*index.match_versioned(text, fields, limit))

    def match_entities(
        self, text: str, fields: Sequence[str] | None = None, limit: int | None = None
    ) -> list[Match]:
        """The vocabulary terms named in ``text``, sorted by position (README: Entity matching)."""
        return self.match(text, fields, limit).matches

    def status(self) -> dict[str, Any]:
        maintainer = self._maintainer
        if maintainer is None:
            return {"ready": False, "version": 0}
        stats = maintainer.stats
        index = maintainer.index
        return {
            "ready": self.ready,
            "version": self.version,
            "terms": 0 if index is None else index.term_count,
            "pending": maintainer.pending,
            "building": maintainer.building,
            "full_builds": stats.full_builds,
            "deltas_applied": stats.deltas_applied,
            "last_build_ms": round(stats.last_build_ms, 1),
            "last_delta_ms": round(stats.last_delta_ms, 1),
            "failures": stats.failures,
        }


def _check_arguments(text: str, fields: Sequence[str] | None, limit: int | None) -> None:
    if not isinstance(text, str) or not text:
        raise ValueError("text must be a non-empty string")
    if len(text) > MAX_TEXT_LENGTH:
        raise ValueError(f"text is longer than {MAX_TEXT_LENGTH} characters")
    if isinstance(fields, str):
        raise ValueError(f"fields must be a list of field names, not the string {fields!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError("limit must be a positive integer")


def _check_fields(fields: Sequence[str], known: Sequence[str]) -> None:
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise ValueError(f"unknown fields {unknown}; known: {', '.join(known)}")


entity_matcher = EntityMatcher()
"""The matcher of the module-level app (``vocabsync.main.app``), following the module-level
``redis_vocabulary_cache``."""


def match_entities(
    text: str, fields: Sequence[str] | None = None, limit: int | None = None
) -> list[Match]:
    """Match with the module-level matcher (the design document's style of in-process API)."""
    return entity_matcher.match_entities(text, fields, limit)
