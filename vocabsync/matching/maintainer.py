"""Keeps a MatchIndex current for the newest snapshot, on one worker thread.

The event loop only hands snapshots over (:meth:`IndexMaintainer.submit`: store, notify; no
work). The worker applies each snapshot's difference to the overlay of the current base and swaps
a new index in (milliseconds, so a change is matchable right away); when the overlay has grown
large, or the vocabulary has been quiet for a while, it rebuilds the base from the newest snapshot
in small chunks, applying fresh changes between chunks. So requests never wait for a build, at most
the current and the next index exist, and snapshots that arrive faster than builds are coalesced:
only the newest is applied.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

from vocabsync.backoff import Backoff
from vocabsync.matching.abbreviations import Abbreviations
from vocabsync.matching.changes import Delta, diff
from vocabsync.matching.index import MatchIndex, snapshot_terms
from vocabsync.matching.layer import Layer, build_steps
from vocabsync.matching.settings import MatchSettings
from vocabsync.vocabulary import Snapshot

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class MaintainerStats:
    """Counters for status and tests."""

    snapshots_applied: int = 0
    overlay_updates: int = 0
    base_builds: int = 0
    last_build_ms: float = 0.0
    last_update_ms: float = 0.0
    failures: int = 0


@dataclass(slots=True)
class _Rebuild:
    source: Snapshot
    steps: Generator[None, None, Layer]
    started: float
    reason: str


class IndexMaintainer:
    """Owns the worker thread; ``index`` is the current index (None until the first build)."""

    def __init__(self, settings: MatchSettings, abbreviations: Abbreviations) -> None:
        self.settings = settings
        self.abbreviations = abbreviations
        self.stats = MaintainerStats()
        self.index: MatchIndex | None = None  # replaced atomically, never mutated
        self._cond = threading.Condition()
        self._pending: Snapshot | None = None
        self._running = False  # between start() and close()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._ready_callbacks: list[Callable[[], None]] = []
        # Worker-owned state:
        self._applied: Snapshot | None = None  # what ``index`` reflects
        self._base_source: Snapshot | None = None  # what the base was built from
        self._delta = Delta()
        self._rebuild: _Rebuild | None = None
        self._last_change = time.monotonic()
        self.retry = Backoff(initial=1.0, maximum=60.0)
        """Delays between retries of an update that keeps failing (a rebuild loop otherwise)."""

    # --- event loop side --------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker (idempotent); snapshots submitted before are applied then."""
        with self._cond:
            if self._running:
                return
            self._running = True
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name="vocabsync-match-index", daemon=True
            )
            self._thread.start()

    def submit(self, snapshot: Snapshot) -> None:
        """Hand the newest snapshot to the worker; replaces one not yet picked up. O(1)."""
        with self._cond:
            self._pending = snapshot
            self._cond.notify()

    def on_ready(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the worker thread, or now) once the first index exists."""
        with self._cond:
            if not self._ready.is_set():
                self._ready_callbacks.append(callback)
                return
        callback()

    def wait_ready(self, timeout: float) -> bool:
        """Block until the first index exists (for startup, never for requests)."""
        return self._ready.wait(timeout)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def building(self) -> bool:
        return self._rebuild is not None

    @property
    def overlay_size(self) -> int:
        index = self.index
        return 0 if index is None else index.overlay_size

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker and wait for it (it finishes at most one build chunk first).

        The index stays readable; a later :meth:`start` carries on from it.
        """
        with self._cond:
            self._running = False
            self._stopping = True
            self._cond.notify()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("matching index worker did not stop within %.0f s", timeout)

    # --- worker -----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and self._pending is None and self._rebuild is None:
                    wait = self._quiet_wait()
                    if wait is not None and wait <= 0:
                        break
                    self._cond.wait(wait)
                if self._stopping:
                    return
                snapshot, self._pending = self._pending, None
            try:
                if snapshot is not None:
                    self._apply(snapshot)
                elif self._rebuild is not None:
                    self._rebuild_step()
                else:
                    self._start_rebuild("quiet")
            except Exception:
                self.stats.failures += 1
                delay = self.retry.next_delay()
                logger.exception(
                    "matching index update failed; rebuilding from the newest snapshot in %.1f s",
                    delay,
                    extra={"action": "match_index_failed"},
                )
                self._rebuild = None
                self._pause(delay)
                with self._cond:  # a snapshot that came during the pause is the newest source
                    newest = self._pending or self._applied
                if newest is not None and not self._stopping:
                    self._start_rebuild("recovery", newest)
            else:
                if self._rebuild is None:  # nothing half done: healthy again
                    self.retry.reset()
            time.sleep(0)  # let the event loop have the GIL between two pieces of work

    def _pause(self, delay: float) -> None:
        """Wait ``delay`` s before retrying a failed update, or less if a snapshot or
        :meth:`close` arrives (a new snapshot may well be the fix)."""
        deadline = time.monotonic() + delay
        with self._cond:
            while not self._stopping and self._pending is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._cond.wait(remaining)

    def _quiet_wait(self) -> float | None:
        """Seconds until a quiet-time rebuild is due (None: nothing to absorb)."""
        if self.index is None or self._delta.size == 0:
            return None
        return self._last_change + self.settings.quiet_seconds - time.monotonic()

    def _apply(self, snapshot: Snapshot) -> None:
        started = time.perf_counter()
        previous = self._applied
        self._applied = snapshot
        self._last_change = time.monotonic()
        self.stats.snapshots_applied += 1
        index = self.index
        if index is None or previous is None:
            if self._rebuild is None:
                self._start_rebuild("initial", snapshot)
            return  # the build in progress catches up with ``_applied`` when it finishes
        changes = diff(previous, snapshot)
        if not changes:
            self.index = index.with_version(snapshot.version)
            return
        self._delta.apply(changes)
        added, removed = self._delta.frozen()
        self.index = index.with_changes(snapshot.version, added, removed)
        self.stats.overlay_updates += 1
        self.stats.last_update_ms = (time.perf_counter() - started) * 1000
        if self._delta.size > self.settings.overlay_max_terms and self._rebuild is None:
            self._start_rebuild("overlay full")

    def _start_rebuild(self, reason: str, source: Snapshot | None = None) -> None:
        snapshot = source or self._applied
        if snapshot is None:
            return
        steps = build_steps(
            snapshot_terms(snapshot), self.abbreviations, self.settings.min_typo_length
        )
        self._rebuild = _Rebuild(snapshot, steps, time.perf_counter(), reason)

    def _rebuild_step(self) -> None:
        rebuild = self._rebuild
        assert rebuild is not None
        try:
            next(rebuild.steps)
            return
        except StopIteration as done:
            base: Layer = done.value
        self._rebuild = None
        latest = self._applied or rebuild.source
        self._base_source = rebuild.source
        self._delta = Delta.between(rebuild.source, latest)
        added, removed = self._delta.frozen()
        fresh = MatchIndex(
            base,
            version=rebuild.source.version,
            settings=self.settings,
            abbreviations=self.abbreviations,
        )
        self.index = (
            fresh.with_changes(latest.version, added, removed)
            if self._delta.size
            else (fresh.with_version(latest.version))
        )
        elapsed = (time.perf_counter() - rebuild.started) * 1000
        self.stats.base_builds += 1
        self.stats.last_build_ms = elapsed
        with self._cond:
            self._ready.set()
            callbacks, self._ready_callbacks = self._ready_callbacks, []
        for callback in callbacks:
            callback()
        logger.info(
            "matching index built (%s): %d terms, version %d, %.0f ms",
            rebuild.reason,
            base.term_count,
            latest.version,
            elapsed,
            extra={"action": "match_index_built", "version": latest.version},
        )
