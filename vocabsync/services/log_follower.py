"""LogFollower: keeps a :class:`VocabularyState` at the head of the vocabulary log.

A session connects, catches up (the entries it missed while away, or the full state once when the
log no longer reaches back to its position), then blocks on ``XREAD`` for new entries and applies
each on top of exactly the position it was computed from. Any gap, duplicate or doubt ends in one
full read, never in a wrong state. Sessions run under the shared
:class:`~vocabsync.supervisor.Supervisor`, so a lost connection is retried with backoff, and every
reconnect starts with a catch-up (invariant 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from vocabsync.config import Settings
from vocabsync.services.redis_client import redis_client
from vocabsync.services.vocabulary_log import LogEntry, VocabularyLog, position_key
from vocabsync.services.vocabulary_state import VocabularyState
from vocabsync.vocabulary import SnapshotFormatError

logger = logging.getLogger(__name__)


async def catch_up(log: VocabularyLog, state: VocabularyState) -> bool:
    """Bring ``state`` to the log's head; False when Redis holds no state at all."""
    async with state.lock:
        head = await log.head()  # SnapshotFormatError: the caller repairs the state
        if head is None:
            return False
        state.note_writer_fields(head.fields, log.fields)
        if head.position == state.position:
            return True
        if state.position and await log.contains(state.position):
            while state.position != head.position:
                entries = await log.read_after(state.position)
                if not entries or not all(state.apply(entry) for entry in entries):
                    break
            if state.position == head.position:
                return True
        found = await log.read_full()
        if found is None:
            return False
        head, snapshot = found
        state.adopt(snapshot, head.position, "redis")
        return True


class LogFollower:
    """One instance's subscription to the log."""

    def __init__(
        self,
        settings: Settings,
        state: VocabularyState,
        *,
        on_connected: Callable[[VocabularyLog], Awaitable[None]],
        on_idle: Callable[[VocabularyLog], Awaitable[None]],
        on_applied: Callable[[int, float], None] | None = None,
    ) -> None:
        self.settings = settings
        self.state = state
        self.on_connected = on_connected
        self.on_idle = on_idle
        self.on_applied = on_applied
        self.running = False
        self.entries_received = 0
        self.bytes_received = 0
        self.malformed_entries = 0
        self.gaps = 0

    async def session(self, healthy: Callable[[], None]) -> None:
        client = redis_client(self.settings, blocking_reads=True)
        log = VocabularyLog(client, self.settings)
        try:
            async with asyncio.timeout(self.settings.network_timeout):
                await client.ping()
            await self.on_connected(log)
            self.running = True  # at once: the connect callback has just woken start()
            # Follow only from a position this log has. The refresh run on connecting may have
            # been served from the database (a fallback read coalesced with it: position ''),
            # or failed; and after a Sentinel failover the new master may lack the entries
            # applied last. XREAD from such a position would skip what was written meanwhile or
            # wait for ids the new master never writes; catching up here (one HGETALL when all
            # is well) takes the log's state first. (A corrupt state was met by that refresh,
            # which rewrites it from the database.)
            with contextlib.suppress(SnapshotFormatError):
                await catch_up(log, self.state)
            healthy()
            await self._follow(log)
        finally:
            self.running = False
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), timeout=self.settings.network_timeout)

    async def _follow(self, log: VocabularyLog) -> None:
        interval = self.settings.health_check_interval
        block_ms = max(1, round(min(1.0, interval) * 1000))
        last_idle = float("-inf")  # heartbeat at once: `vocabsync status` sees a new instance
        cursor = self.state.position
        while True:
            if time.monotonic() - last_idle >= interval:
                await self.on_idle(log)
                last_idle = time.monotonic()
            start = max(cursor, self.state.position, key=position_key)
            entries = await log.read_after(start, block_ms=block_ms)
            started = time.perf_counter()
            applied = 0
            for entry in entries:
                cursor = entry.id
                self.entries_received += 1
                self.bytes_received += entry.size
                async with self.state.lock:
                    ok = self.state.apply(entry)
                if ok:
                    applied += 1
                    continue
                await self._recover(log, entry)
            if applied and self.on_applied is not None:
                self.on_applied(applied, time.perf_counter() - started)

    async def _recover(self, log: VocabularyLog, entry: LogEntry) -> None:
        """An entry that does not follow the state: read the full state once.

        When even the full state is older than the entry, the entry is not part of the log's
        history (written by something else, or corrupted): it is counted and skipped.
        """
        self.gaps += 1
        logger.info(
            "entry %s does not follow %s; reading the full state",
            entry.id,
            self.state.position or "(nothing)",
            extra={"action": "log_gap"},
        )
        await catch_up(log, self.state)
        if entry.kind not in ("delta", "reset") or position_key(self.state.position) < position_key(
            entry.id
        ):
            self.malformed_entries += 1
            logger.warning(
                "skipping log entry %s: not part of the vocabulary's history (kind %r)",
                entry.id,
                entry.kind[:40],
                extra={"action": "malformed_message"},
            )
