"""Keeps a MatchIndex current on one worker thread, change by change.

The event loop only hands work over (:meth:`IndexMaintainer.apply_delta`, :meth:`load_full`,
:meth:`submit`: queue it, notify; microseconds). The worker takes it in order:

- a delta (field -> terms added / removed) is applied to the index in place, in O(change)
  (:meth:`MatchIndex.apply_steps`); one for a version the index already has is dropped;
- a full state (startup, after a gap or reset) is the only full build: a new index is built in
  chunks while the current one keeps answering, then swapped in. When an index exists and the
  state differs from it in under half its terms, the difference is applied instead (no second
  index in memory, no rebuild). A full state makes everything queued before it moot, and
  deltas that arrive while it is built are applied after it;
- a snapshot (``on_snapshot``, until the cache hands deltas over) is a full state that is
  applied as its difference from the previous snapshot.

Nothing rebuilds while the vocabulary keeps changing. An update that fails is logged and
counted; the worker then rebuilds from what the index should hold (a full state, or its terms
with the failed change applied), after a backoff that doubles while it keeps failing and that a
new full state (maybe the fix) or :meth:`close` cuts short.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Generator, Iterable, Mapping
from dataclasses import dataclass, field

from vocabsync.backoff import Backoff
from vocabsync.heap import park_long_lived
from vocabsync.matching.abbreviations import Abbreviations
from vocabsync.matching.changes import diff
from vocabsync.matching.index import MatchIndex, fields_of
from vocabsync.matching.settings import MatchSettings
from vocabsync.vocabulary import Snapshot

logger = logging.getLogger(__name__)

RELOAD_AS_DELTA_SHARE = 0.5
"""A full state that differs from the index in less than this share of its terms is applied as
its difference instead of being built."""


@dataclass(slots=True)
class MaintainerStats:
    """Counters for status and tests."""

    full_builds: int = 0  # new indexes built from a full state
    reloads_applied: int = 0  # full states applied as their difference from the index
    deltas_applied: int = 0
    deltas_dropped: int = 0  # for a version the index already had, or before any full state
    snapshots_applied: int = 0
    terms_changed: int = 0
    last_build_ms: float = 0.0
    last_delta_ms: float = 0.0  # handed over -> matchable, for the last delta
    failures: int = 0


@dataclass(slots=True)
class _Full:
    """A whole vocabulary; ``rebuild`` forces a new index (recovery)."""

    version: int
    terms: Mapping[str, Iterable[str]]
    snapshot: Snapshot | None = None
    rebuild: bool = False
    not_before: float = 0.0  # monotonic time before which a retry must not run
    queued: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class _Delta:
    version: int
    added: Mapping[str, Collection[str]]
    removed: Mapping[str, Collection[str]]
    not_before: float = 0.0
    queued: float = field(default_factory=time.monotonic)


_Op = _Full | _Delta


@dataclass(slots=True)
class _Job:
    op: _Op
    steps: Generator[None, None, None]
    building: MatchIndex | None  # the new index a full build fills (None: in place)


class IndexMaintainer:
    """Owns the worker thread; ``index`` is the current index (None until the first build)."""

    def __init__(self, settings: MatchSettings, abbreviations: Abbreviations) -> None:
        self.settings = settings
        self.abbreviations = abbreviations
        self.stats = MaintainerStats()
        self.index: MatchIndex | None = None  # replaced by a full build, else updated in place
        self.retry = Backoff(initial=1.0, maximum=60.0)
        """Delays between retries of an update that keeps failing (a rebuild loop otherwise)."""
        self._cond = threading.Condition()
        self._queue: deque[_Op] = deque()
        self._running = False  # between start() and close()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._ready_callbacks: list[Callable[[], None]] = []
        # Worker-owned:
        self._job: _Job | None = None
        self._snapshot: Snapshot | None = None  # the snapshot ``index`` reflects, if it came so

    # --- event loop side --------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker (idempotent); work handed over before is done then."""
        with self._cond:
            if self._running:
                return
            self._running = True
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name="vocabsync-match-index", daemon=True
            )
            self._thread.start()

    def apply_delta(
        self,
        version: int,
        added: Mapping[str, Collection[str]],
        removed: Mapping[str, Collection[str]],
    ) -> None:
        """Queue a change (field -> terms) that took the vocabulary to ``version``. O(1): the
        collections are read later, on the worker thread, so they must not change afterwards."""
        with self._cond:
            self._queue.append(_Delta(version, added, removed))
            self._cond.notify()

    def load_full(self, version: int, terms: Mapping[str, Iterable[str]]) -> None:
        """Queue a whole vocabulary (read later on the worker thread: pass collections that do
        not change afterwards); whatever was queued before it is dropped."""
        self._queue_full(_Full(version, terms))

    def submit(self, snapshot: Snapshot) -> None:
        """Queue the newest snapshot (a full state); replaces whatever was not picked up. O(1)."""
        self._queue_full(_Full(snapshot.version, snapshot.terms, snapshot))

    def _queue_full(self, op: _Full) -> None:
        with self._cond:
            self._queue.clear()
            self._queue.append(op)
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
        """A new index is being built from a full state."""
        job = self._job
        return job is not None and job.building is not None

    @property
    def pending(self) -> int:
        """Changes and full states handed over and not yet picked up."""
        return len(self._queue)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker and wait for it (it finishes at most one chunk of work first).

        The index stays readable; a later :meth:`start` carries on where this one stopped.
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
                op = self._next_op()
                if self._stopping:
                    return
                job = self._job
                if (
                    job is not None
                    and job.building is not None
                    and any(isinstance(queued, _Full) for queued in self._queue)
                ):
                    self._job = None  # a newer full state makes this build moot
                    continue
            try:
                if op is not None:
                    self._job = self._start_job(op)
                if self._job is not None:
                    self._step()
            except Exception:
                self._failed(op or (self._job.op if self._job else None))
            time.sleep(0)  # let the event loop have the GIL between two pieces of work

    def _next_op(self) -> _Op | None:
        """Wait for work (under the condition); the next queued op when no job is running."""
        while not self._stopping:
            if self._job is not None:
                return None
            if self._queue:
                wait = self._queue[0].not_before - time.monotonic()
                if wait <= 0:
                    return self._queue.popleft()
                self._cond.wait(wait)  # a retry backs off; a new full state replaces it
            else:
                self._cond.wait()
        return None

    def _start_job(self, op: _Op) -> _Job | None:
        if isinstance(op, _Delta):
            index = self.index
            if index is None or op.version <= index.version:
                self.stats.deltas_dropped += 1
                logger.debug("matching index: delta to version %d dropped", op.version)
                return None
            self._snapshot = None
            return _Job(op, self._apply(op, index), None)
        index = self.index
        if index is not None and not op.rebuild and index.fields == fields_of(op.terms):
            previous, self._snapshot = self._snapshot, None
            if previous is not None and op.snapshot is not None:
                changes = diff(previous, op.snapshot)
                return _Job(
                    op,
                    self._reload(
                        op,
                        index,
                        {name: change.added for name, change in changes.items()},
                        {name: change.removed for name, change in changes.items()},
                    ),
                    None,
                )
            terms = _materialise(op.terms)
            present = index.present()
            added = {name: set(terms[name]).difference(present[name]) for name in terms}
            removed = {name: present[name].difference(terms[name]) for name in terms}
            changed = sum(map(len, added.values())) + sum(map(len, removed.values()))
            total = max(index.term_count, sum(map(len, terms.values())), 1)
            if changed < RELOAD_AS_DELTA_SHARE * total:
                return _Job(op, self._reload(op, index, added, removed), None)
            op.terms = terms
        self._snapshot = None
        fresh = MatchIndex(
            self.settings, self.abbreviations, version=op.version, fields=fields_of(op.terms)
        )
        return _Job(op, self._build(op, fresh), fresh)

    def _step(self) -> None:
        job = self._job
        assert job is not None
        try:
            next(job.steps)
        except StopIteration:
            self._job = None
            self.retry.reset()

    def _apply(self, op: _Delta, index: MatchIndex) -> Generator[None, None, None]:
        changed = yield from index.apply_steps(op.version, op.added, op.removed)
        self.stats.deltas_applied += 1
        self.stats.terms_changed += changed
        self.stats.last_delta_ms = (time.monotonic() - op.queued) * 1000

    def _reload(
        self,
        op: _Full,
        index: MatchIndex,
        added: Mapping[str, Collection[str]],
        removed: Mapping[str, Collection[str]],
    ) -> Generator[None, None, None]:
        changed = yield from index.apply_steps(op.version, added, removed)
        self.stats.terms_changed += changed
        if op.snapshot is not None:
            self.stats.snapshots_applied += 1
            self._snapshot = op.snapshot
        else:
            self.stats.reloads_applied += 1
        logger.info(
            "matching index reloaded: %d terms changed, version %d",
            changed,
            op.version,
            extra={"action": "match_index_reloaded", "version": op.version},
        )

    def _build(self, op: _Full, fresh: MatchIndex) -> Generator[None, None, None]:
        started = time.perf_counter()
        yield from fresh.fill_steps(_materialise(op.terms))
        self.index = fresh
        park_long_lived(fresh.term_count)
        if op.snapshot is not None:
            self.stats.snapshots_applied += 1
            self._snapshot = op.snapshot
        elapsed = (time.perf_counter() - started) * 1000
        self.stats.full_builds += 1
        self.stats.last_build_ms = elapsed
        with self._cond:
            self._ready.set()
            callbacks, self._ready_callbacks = self._ready_callbacks, []
        for callback in callbacks:
            callback()
        logger.info(
            "matching index built: %d terms, version %d, %.0f ms",
            fresh.term_count,
            op.version,
            elapsed,
            extra={"action": "match_index_built", "version": op.version},
        )

    def _failed(self, op: _Op | None) -> None:
        """Log, count, and queue a rebuild of what the index should hold, after a backoff."""
        self.stats.failures += 1
        delay = self.retry.next_delay()
        logger.exception(
            "matching index update failed; rebuilding in %.1f s",
            delay,
            extra={"action": "match_index_failed"},
        )
        self._job = None
        self._snapshot = None
        try:
            recovery = self._recovery(op)
        except Exception:
            logger.exception(
                "matching index: nothing to rebuild from; waiting for a full state",
                extra={"action": "match_index_failed"},
            )
            return
        if recovery is None:
            return
        recovery.not_before = time.monotonic() + delay
        with self._cond:
            if not any(isinstance(queued, _Full) for queued in self._queue):
                self._queue.appendleft(recovery)

    def _recovery(self, op: _Op | None) -> _Full | None:
        if isinstance(op, _Full):
            return _Full(op.version, op.terms, op.snapshot, rebuild=True)
        index = self.index
        if op is None or index is None:
            return None
        terms = index.present()
        for name, values in op.removed.items():
            if name in terms:
                terms[name].difference_update(values)
        for name, values in op.added.items():
            if name in terms:
                terms[name].update(values)
        return _Full(op.version, terms, rebuild=True)


def _materialise(terms: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    """The fields as tuples: read once, so an iterator or a retry sees the same terms."""
    return {name: tuple(terms.get(name, ())) for name in fields_of(terms)}
