"""LogWriter: turn what was read from PostgreSQL into entries of the vocabulary log.

Shared by the bridge (every notification, every resync) and by an instance's manual refresh, so
there is one way to change the shared state (invariant 7). The writer keeps its own view of the
log's state and position; a write is computed against that view and the log refuses it when the
head has moved, so the writer catches up (following the log, or reading the full state when it
cannot) and computes again. Nothing stale is written: the log also refuses an older version.
A log that went back (Redis lost writes in a failover or a restart) is never patched with a
partial delta: the writer raises :class:`LogRewoundError` and the caller reads the database whole.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Final

from vocabsync.db.identity import is_older_history, older_history_error
from vocabsync.errors import RedisUnavailableError
from vocabsync.heap import PARK_FROM_TERMS, park_long_lived
from vocabsync.services.vocabulary_log import VocabularyLog, WriteResult
from vocabsync.vocabulary import (
    Delta,
    FieldDelta,
    Snapshot,
    SnapshotFormatError,
    TermSet,
    set_difference,
)

logger = logging.getLogger(__name__)

MAX_ATTEMPTS: Final = 20


@dataclass(frozen=True, slots=True)
class Observation:
    """What one database read established, at one version of one database history.

    ``present``/``absent``: touched terms of a field now in / not in the table (index lookups);
    ``full``: fields read whole (bulk statements, TRUNCATE, resyncs).
    """

    version: int
    identity: str
    present: Mapping[str, Collection[str]]
    absent: Mapping[str, Collection[str]]
    full: Mapping[str, TermSet]

    def delta_against(self, state: Snapshot) -> Delta:
        fields: dict[str, FieldDelta] = {}
        for name in set(self.present) | set(self.absent):
            change = state.settle(name, self.present.get(name, ()), self.absent.get(name, ()))
            if change:
                fields[name] = change
        for name, terms in self.full.items():
            added, removed = set_difference(terms, state.get(name))
            if added or removed:
                fields[name] = FieldDelta(added, removed)
        return Delta(fields)


class StaleReadError(RedisUnavailableError):
    """The log already holds a newer version than this read: read the database again."""


class LogRewoundError(RedisUnavailableError):
    """Redis lost entries this writer had written or read (a Sentinel failover to a replica
    that lagged, a restart without persistence, a restore): the changes they carried are in no
    log any more, and a delta of the few terms just touched would not bring them back. The
    caller reads the database whole (the bridge: its session ends, the next one resyncs)."""


class LogWriter:
    """Writes deltas computed from database reads; keeps the state it believes the log holds."""

    def __init__(self, log: VocabularyLog) -> None:
        self.log = log
        self.state = Snapshot.empty(self.log.fields)
        self.position = ""
        self.read_version = 0
        """The newest database version behind ``state`` (its version can be higher: see
        :attr:`~vocabsync.services.vocabulary_log.Head.read_version`). A read older than this
        is stale; one at this version is not, even when ``state.version`` is above it."""
        self.appends = 0
        self.resets = 0
        self.full_reads = 0
        self.repairs = 0
        self.corrupt = False

    async def catch_up(self) -> bool:
        """Bring the writer's view to the log's head: follow new entries, or read it whole.

        Returns True when the log went back: it no longer holds what this writer knew (its
        state vanished, or is older than the writer's in the same database history). Writers
        never move the head back (the scripts refuse an older version), so only a loss in
        Redis does that; a connection can survive it unnoticed (redis-py reconnects an idle
        pooled connection silently, to a restarted Redis or, with Sentinel, to the new master).

        A state in Redis that is not ours (corrupted, wrong types) counts as no state: the
        next full write replaces it whatever its head says.
        """
        known = self.state
        try:
            await self._catch_up()
        except SnapshotFormatError as exc:
            self.state, self.position, self.corrupt = Snapshot.empty(self.log.fields), "", True
            self.repairs += 1
            logger.warning(
                "the vocabulary state in Redis is unusable (%s); it will be rewritten",
                exc,
                extra={"action": "redis_value_corrupted"},
            )
        if not known.is_complete:
            return False
        same_history = self.state.identity == known.identity
        return not self.position or (same_history and self.state.version < known.version)

    async def _catch_up(self) -> None:
        head = await self.log.head()
        if head is None:
            self.state, self.position, self.read_version = Snapshot.empty(self.log.fields), "", 0
            return
        if head.position == self.position:
            return
        if self.position and await self.log.contains(self.position):
            while self.position != head.position:
                entries = await self.log.read_after(self.position)
                if not entries:
                    break
                for entry in entries:
                    if entry.kind != "delta" or entry.prev != self.position or not entry.delta:
                        return await self._read_full()
                    self.state = self.state.apply(
                        entry.delta, entry.version, entry.refreshed_at, entry.identity
                    )
                    self.position = entry.id
                    self.read_version = entry.read_version
            if self.position == head.position:
                return
        await self._read_full()

    async def _read_full(self) -> None:
        found = await self.log.read_full()
        self.full_reads += 1
        if found is None:
            self.state, self.position, self.read_version = Snapshot.empty(self.log.fields), "", 0
        else:
            head, self.state = found
            self.position = head.position
            park_long_lived(self.state.size)
            self.read_version = head.read_version

    async def write_observation(self, seen: Observation, *, message: str = "*") -> Delta | None:
        """Apply what a read saw; returns the delta written (None: nothing changed).

        Raises :class:`StaleReadError` when the log moved past ``seen.version`` meanwhile
        (the caller reads again), and writes a full reset when the history changed.
        """
        for _ in range(MAX_ATTEMPTS):
            if not self.position:
                raise StaleReadError(
                    "Redis holds no vocabulary state (restarted empty or flushed): a full "
                    "resync is needed before deltas can be written"
                )
            if self.state.identity != seen.identity:
                raise StaleReadError(
                    "the database identity changed since the log was written: a full resync "
                    "is needed"
                )
            # Stale: read before the newest read the log holds. Not the log's version: two reads
            # at one snapshot can bring different news (different terms touched), and the
            # second entry's version is then above the database's, which a quiet database does
            # not catch up with (a new leader's resync failed until some commit moved it).
            if seen.version < self.read_version:
                raise StaleReadError(
                    f"read at version {seen.version}, the log holds a read at {self.read_version}"
                )
            delta = seen.delta_against(self.state)
            if not delta:
                return None
            # Every entry still gets a version of its own, so versions order entries.
            version = max(seen.version, self.state.version + 1)
            read = max(seen.version, self.read_version)
            result = await self.log.append(
                self.position, delta, version, seen.identity, message=message, read_version=read
            )
            if self._accept(result, delta, version, seen.identity):
                self.read_version = read
                return delta
            known_version = self.state.version
            if await self.catch_up():
                raise LogRewoundError(
                    f"the vocabulary log in Redis went back (version {known_version} -> "
                    f"{self.state.version or 'none'}): Redis lost writes (a failover to a replica "
                    "that lagged, or a restart); resyncing from the database"
                )
        raise RedisUnavailableError(f"gave up appending: {MAX_ATTEMPTS} concurrent writes in a row")

    async def write_full(self, loaded: Snapshot, *, message: str = "*") -> Delta | None:
        """Make the log hold ``loaded`` (a full database read).

        The same history: the difference is appended as one delta (instances apply it, they do
        not reload). Another history, or no state in Redis: the state is replaced and every
        reader reloads; but never by an older history of the one held (an old primary that came
        back after a failover): that raises :class:`~vocabsync.db.identity.OlderHistoryError`.
        Returns the delta written (an empty one for a replace, None when the log already held
        exactly this).
        """
        for _ in range(MAX_ATTEMPTS):
            await self.catch_up()
            if self.position and is_older_history(loaded.identity, self.state.identity):
                raise older_history_error(
                    loaded.identity,
                    self.state.identity,
                    self.log.settings.postgres_display,
                    self.log.head_key,
                )
            if not self.position or self.state.identity != loaded.identity:
                expected = "*" if self.corrupt else self.position
                result = await self.log.replace(expected, loaded)
                if result.outcome == "ok":
                    self.state, self.position, self.corrupt = loaded, result.position, False
                    park_long_lived(loaded.size)
                    self.read_version = loaded.version
                    self.resets += 1
                    logger.info(
                        "vocabulary state replaced (version %d, %d terms)",
                        loaded.version,
                        loaded.size,
                        extra={"action": "state_replaced", "version": loaded.version},
                    )
                    return Delta()
                continue
            seen = Observation(loaded.version, loaded.identity, {}, {}, dict(loaded.terms))
            try:
                return await self.write_observation(seen, message=message)
            except StaleReadError:
                raise
            except RedisUnavailableError:
                continue
        raise RedisUnavailableError(f"gave up writing: {MAX_ATTEMPTS} concurrent writes in a row")

    def _accept(self, result: WriteResult, delta: Delta, version: int, identity: str) -> bool:
        if result.outcome != "ok":
            return False
        self.state = self.state.apply(delta, version, identity=identity)
        self.position = result.position
        self.appends += 1
        if delta.size >= PARK_FROM_TERMS:  # a bulk change: new sets of the whole field
            park_long_lived(self.state.size)
        return True
