"""VocabSync: the live vocabulary and its entity matcher, as one object an AI server embeds.

One ``VocabSync`` per process holds the in-memory vocabulary (kept current from Redis by the
bridge's announcements, with PostgreSQL as fallback) and the matching index that follows it::

    vocab = VocabSync.from_settings()          # no I/O, no settings read yet
    async with vocab:                          # connect, load, subscribe; stop on exit
        vocab.match("diesel for marikina riverbank ph 2")   # -> list[Match], from memory
        vocab.get_vocabulary()                 # the six lists, from memory
        vocab.on_update(lambda update: print(update.version))

In a FastAPI app, include ``vocab.router`` (see :mod:`vocabsync.fastapi`). Constructing a
``VocabSync`` connects to nothing and reads no environment: settings are read when it starts
(building ``router`` reads only VOCABSYNC_SOURCES: its schema lists the vocabulary fields).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from vocabsync.config import Settings, sources_from_environment
from vocabsync.matching.model import Match
from vocabsync.matching.settings import MatchSettings
from vocabsync.services.entity_matcher import EntityMatcher
from vocabsync.services.redis_vocabulary import RedisVocabularyCache
from vocabsync.vocabulary import Snapshot

if TYPE_CHECKING:
    from fastapi import APIRouter
    from starlette.applications import Starlette

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class VocabularyUpdate:
    """A new vocabulary version is being served (what :meth:`VocabSync.on_update` reports)."""

    previous_version: int
    """The version served before (0 when there was none)."""
    version: int
    """The version served now; versions only grow within one database history."""
    counts: Mapping[str, int]
    """Terms per field in the new version."""


UpdateCallback = Callable[[VocabularyUpdate], None]


class VocabSync:
    """The vocabulary and entity matching of one process: start it, read it, match against it.

    Build it with :meth:`from_settings`. Start and stop it with ``async with vocab:`` (or
    :meth:`start`/:meth:`stop`, or its FastAPI lifespan); nested ``async with`` blocks share one
    running instance, which stops when the outermost block exits. Reads and matching never wait
    on the network.
    """

    def __init__(self, cache: RedisVocabularyCache, matcher: EntityMatcher | None = None) -> None:
        """Wrap an existing cache (and matcher); :meth:`from_settings` is the usual way in."""
        self.cache = cache
        """The vocabulary cache (its ``status()`` and ``metrics`` feed /ready and /metrics)."""
        self.matcher = matcher if matcher is not None else EntityMatcher()
        """The entity matcher following :attr:`cache`."""
        self.matcher.attach(cache)
        cache.add_snapshot_listener(self._on_snapshot)
        self._callbacks: list[UpdateCallback] = []
        self._running = False
        self._entered = 0
        self._lock = asyncio.Lock()
        self._router: APIRouter | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, match_settings: MatchSettings | None = None
    ) -> VocabSync:
        """A new instance; ``None`` settings are read from the environment (and ``.env``) when it
        starts, not now, so it may be created at import time.
        """
        return cls(RedisVocabularyCache(settings), EntityMatcher(match_settings))

    @property
    def fields(self) -> tuple[str, ...]:
        """The configured vocabulary fields (from the settings if given, else from
        VOCABSYNC_SOURCES alone, so building the router reads no other setting)."""
        settings = self.cache.given_settings
        return (settings.sources if settings else sources_from_environment()).fields

    @property
    def settings(self) -> Settings:
        """The connection settings (read from the environment on first use when not given)."""
        return self.cache.settings

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._running

    async def start(self) -> None:
        """Load the vocabulary, subscribe to changes and build the matching index (idempotent).

        Never raises for unreachable services: it then starts without a vocabulary, serves in
        fallback mode and keeps reconnecting (see :attr:`ready`). Waits briefly for the first
        index (``VOCABSYNC_MATCH_STARTUP_WAIT_SECONDS``) so matching works as soon as it returns.
        """
        async with self._lock:
            if self._running:
                return
            self.matcher.start()
            try:
                await self.cache.start_listener()
                if self.ready:
                    await self.matcher.wait_ready()
            except BaseException:
                await self._shutdown()
                raise
            self._running = True

    async def stop(self) -> None:
        """Stop listening and close every connection and the matcher's thread (idempotent).

        What was loaded stays readable; :meth:`start` may be called again.
        """
        async with self._lock:
            if not self._running:
                return
            self._running = False
            await self._shutdown()

    async def _shutdown(self) -> None:
        try:
            await self.cache.stop()
        finally:
            # Joining the worker may take one build chunk: keep the event loop free meanwhile.
            await asyncio.to_thread(self.matcher.close)

    async def __aenter__(self) -> Self:
        self._entered += 1
        try:
            await self.start()
        except BaseException:
            self._entered -= 1
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._entered -= 1
        if self._entered == 0:
            await self.stop()

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """A FastAPI/Starlette lifespan: makes this instance the app's, runs it while the app runs.

        :attr:`router` carries it already. Enter it yourself (``async with vocab.lifespan(app):``
        in your own lifespan) when your startup code needs the vocabulary; nesting is free.
        """
        bound = getattr(app.state, "vocabsync", None)
        if bound is not None and bound is not self:
            raise RuntimeError(
                "this app already serves another VocabSync; include one VocabSync per app"
            )
        app.state.vocabsync = self
        # The names the routes read (vocabsync.api.deps), kept for apps built before VocabSync.
        app.state.vocabulary_cache = self.cache
        app.state.entity_matcher = self.matcher
        async with self:
            yield

    @property
    def router(self) -> APIRouter:
        """The vocabsync endpoints with this instance's lifespan, for ``app.include_router``.

        ``GET /api/vocabulary``, ``POST /api/vocabulary/refresh``, ``POST /api/vocabulary/match``,
        ``GET /health``, ``GET /ready``, ``GET /metrics``. FastAPI runs an included router's
        lifespan together with the app's, so including it is enough to start and stop this
        instance with the app.
        """
        if self._router is None:
            from vocabsync.api.router import build_router

            self._router = build_router(self.lifespan, self.fields)
        return self._router

    # --- reads ----------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once a complete vocabulary is held (what ``GET /ready`` answers 200 for)."""
        return bool(self.cache.status().get("has_snapshot"))

    @property
    def version(self) -> int:
        """The version of the vocabulary served now (0 before the first load)."""
        return self.cache.snapshot.version

    def get_vocabulary(self) -> Snapshot:
        """The vocabulary served now, from memory; never waits on the network.

        An immutable object per version, handed out without a copy: ``vocab["projects"]`` is a
        sorted, immutable set of terms (``in``, ``len``, iteration), and ``.as_lists()`` copies
        into the design document's six lists when a plain dict is needed.
        """
        return self.cache.get_vocabulary()

    def counts(self) -> dict[str, int]:
        """Terms per field, without copying the lists."""
        return dict(self.cache.snapshot.counts())

    def match(
        self, question: str, fields: Sequence[str] | None = None, limit: int | None = None
    ) -> list[Match]:
        """The vocabulary terms named in ``question``, sorted by position, from memory.

        Typos, case, accents and common abbreviations are tolerated (README: Entity matching).
        ``fields`` limits the search to some of the six lists; ``limit`` keeps the best-scoring
        matches. CPU only (microseconds to milliseconds per question). Raises ``ValueError`` for
        bad arguments and :class:`~vocabsync.services.entity_matcher.IndexNotReadyError` before
        the first index exists (not started, no vocabulary yet, or matching disabled).
        The index follows each new vocabulary version within milliseconds.
        """
        return self.matcher.match_entities(question, fields, limit)

    async def refresh(self) -> VocabularyUpdate:
        """Reload from PostgreSQL now, store it in Redis and tell every instance.

        For after a bulk import or when troubleshooting; concurrent calls share one reload.
        Raises :class:`~vocabsync.errors.RefreshError` (a ``VocabSyncError``) when PostgreSQL or
        Redis fails; the previous vocabulary stays in use.
        """
        previous = self.version
        snapshot = await self.cache.refresh_cache("manual")
        return VocabularyUpdate(previous, snapshot.version, dict(snapshot.counts()))

    def status(self) -> dict[str, Any]:
        """Links, listener, fallback, version and matcher state (the body of ``GET /ready``)."""
        return {**self.cache.status(), "matcher": self.matcher.status()}

    # --- new versions ------------------------------------------------------------------------

    def on_update(self, callback: UpdateCallback) -> Callable[[], None]:
        """Call ``callback(update)`` each time a newer vocabulary is adopted; returns a function
        that unsubscribes it.

        It runs in the event loop, on the refresh path: return quickly, and hand heavy work to a
        task or thread of your own. An exception is logged and does not reach the other callbacks.
        """
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    def _on_snapshot(self, previous: Snapshot, current: Snapshot) -> None:
        if not self._callbacks:
            return
        update = VocabularyUpdate(previous.version, current.version, dict(current.counts()))
        for callback in list(self._callbacks):
            try:
                callback(update)
            except Exception:
                logger.exception(
                    "vocabulary update callback %r failed",
                    callback,
                    extra={"action": "update_callback_failed"},
                )
