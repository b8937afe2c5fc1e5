"""VocabularyState: the snapshot an API instance serves, and where in the log it stands.

The state changes in exactly two ways: a log entry applied on top of exactly the position it was
computed from, or a whole snapshot adopted (startup, a gap in the log, a reset, a database read in
fallback). Listeners (the entity matcher, user callbacks) hear each change with its delta, or
with ``None`` when the whole vocabulary was replaced, so derived state can follow in O(change).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Literal

from vocabsync.db.identity import is_older_history, timeline_of
from vocabsync.heap import PARK_FROM_TERMS, park_long_lived
from vocabsync.services.vocabulary_log import LogEntry, position_key
from vocabsync.vocabulary import Delta, Snapshot

logger = logging.getLogger(__name__)

Source = Literal["memory", "redis", "database", "none"]
SnapshotListener = Callable[[Snapshot, Snapshot], None]
ChangeListener = Callable[[Snapshot, Snapshot, Delta | None], None]
"""``listener(previous, current, delta)``; ``delta`` is None when the state was replaced whole."""


class VocabularyState:
    """The current snapshot, its log position, and who to tell when it changes."""

    def __init__(self) -> None:
        self.snapshot = Snapshot.empty()
        self.position = ""
        """Log entry id the snapshot is at; '' when it did not come from the log."""
        self.source: Source = "none"
        self.deltas_applied = 0
        self.full_loads = 0
        self.lock = asyncio.Lock()
        """Held by whoever reads from Redis and then changes the state, so reads and applies of
        two catch-ups never interleave."""
        self._listeners: list[ChangeListener] = []
        self.on_propagated: Callable[[float], None] | None = None
        self.foreign_fields: tuple[str, ...] = ()
        """Fields the log changed that this instance is not configured with (its
        VOCABSYNC_SOURCES differs from the bridge's); each is logged once."""
        self._writer_fields: tuple[str, ...] | None = None

    def add_listener(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def apply(self, entry: LogEntry) -> bool:
        """Apply ``entry`` if it follows the current position; False means a gap (reload)."""
        if self.position and position_key(entry.id) <= position_key(self.position):
            return True  # a duplicate or an old entry: already reflected
        if entry.kind != "delta" or entry.delta is None or entry.prev != self.position:
            return False
        if self.position == "" or entry.identity != self.snapshot.identity:
            return False
        previous = self.snapshot
        self._note_foreign(previous.unknown_in(entry.delta))
        self.snapshot = previous.apply(
            entry.delta, entry.version, entry.refreshed_at, entry.identity
        )
        self.position = entry.id
        self.source = "redis"
        self.deltas_applied += 1
        if entry.delta.size >= PARK_FROM_TERMS:  # a bulk change: new sets of the whole field
            park_long_lived(self.snapshot.size)
        if self.on_propagated is not None and entry.refreshed_at:
            self.on_propagated(max(0.0, time.time() - entry.refreshed_at))
        self._notify(previous, self.snapshot, entry.delta)
        return True

    def adopt(self, snapshot: Snapshot, position: str, source: Source) -> bool:
        """Replace the whole state; False (and nothing changes) for a database read that is
        older than the state held: of the same history at a lower version, or of a history a
        promotion left behind (an earlier timeline). The log itself is always followed."""
        previous = self.snapshot
        same_history = previous.identity == snapshot.identity and previous.is_complete
        if source == "database" and same_history and snapshot.version < previous.version:
            return False
        if source == "database" and is_older_history(snapshot.identity, previous.identity):
            logger.warning(
                "not serving a database read from timeline %s: the vocabulary held is from "
                "timeline %s of the same database (an old primary is reachable)",
                timeline_of(snapshot.identity),
                timeline_of(previous.identity),
                extra={"action": "older_history_refused"},
            )
            return False
        self.position = position
        self.source = source
        if same_history and snapshot.version == previous.version and previous.same_terms(snapshot):
            return False
        self.snapshot = snapshot
        self.full_loads += 1
        park_long_lived(snapshot.size)
        self._notify(previous, snapshot, None)
        return True

    def note_writer_fields(self, written: tuple[str, ...] | None, mine: tuple[str, ...]) -> None:
        """Warn (once per field set) when the log's writer has other fields than this instance:
        it serves its own fields, those the writer lacks stay empty."""
        if written is None or written == mine or written == self._writer_fields:
            return
        self._writer_fields = written
        logger.warning(
            "the bridge writes the vocabulary fields %s, this instance is configured with %s: "
            "give every instance the bridge's VOCABSYNC_SOURCES",
            ", ".join(written),
            ", ".join(mine),
            extra={"action": "fields_differ_from_bridge", "fields": list(written)},
        )

    def _note_foreign(self, names: list[str]) -> None:
        new = [name for name in names if name not in self.foreign_fields]
        if not new:
            return
        self.foreign_fields = (*self.foreign_fields, *new)
        logger.warning(
            "the vocabulary log changes the field(s) %s, which this instance is not configured "
            "with (it serves %s): give every instance the bridge's VOCABSYNC_SOURCES",
            ", ".join(new),
            ", ".join(self.snapshot.fields),
            extra={"action": "unknown_fields_in_log", "fields": new},
        )

    def _notify(self, previous: Snapshot, current: Snapshot, delta: Delta | None) -> None:
        for listener in self._listeners:
            try:
                listener(previous, current, delta)
            except Exception:
                logger.exception(
                    "vocabulary listener failed", extra={"action": "snapshot_listener_failed"}
                )
