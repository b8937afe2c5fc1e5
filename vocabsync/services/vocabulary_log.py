"""The vocabulary log in Redis: the full state, a bounded stream of deltas, and their head.

Keys (all behind ``VOCABSYNC_KEY_PREFIX``):

- ``vocabsync:terms:<field>``: one Redis set per field, the current state;
- ``vocabsync:log``: a stream of entries, each a delta (or a *reset*: the state was replaced),
  with the position it applies on top of (``prev``), capped at ``VOCABSYNC_LOG_LENGTH`` entries;
- ``vocabsync:head``: the position, version and database identity the state is at, and the
  fields its writer was configured with (so a reader configured otherwise can say so).

A writer changes all three in one Lua script, which refuses a delta unless the head is exactly
the position the writer computed it from (and the version does not go back), so the state and the
log can never disagree, and no stale delta is ever applied (invariant 4). A reader follows the
stream from its position; an entry whose ``prev`` is not that position means a gap (trimmed log,
lost writes after a failover, a reset): the reader loads the full state once, atomically, and
follows again. The script also PUBLISHes on the seed's channel ``vocabulary_updated``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from vocabsync.config import Settings
from vocabsync.errors import RedisUnavailableError
from vocabsync.services.redis_client import describe_redis_error
from vocabsync.vocabulary import Delta, Snapshot, SnapshotFormatError

CHUNK: Final = 5000
"""Terms per SADD when a full state is written (keeps each command and Lua call small)."""

_CHECK_HEAD: Final = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local head = redis.call('HMGET', KEYS[1], 'pos', 'version', 'identity')
local pos = head[1] or ''
if ARGV[1] ~= '*' and pos ~= ARGV[1] then return {'moved', pos} end
local same_history = head[3] and head[3] == ARGV[3]
if ARGV[10] == 'delta' and pos ~= '' and not same_history then return {'identity', pos} end
if same_history and head[2] then
  local a, b = ARGV[2], head[2]
  if #a < #b or (#a == #b and a < b) then return {'stale', pos} end
end
"""
"""Shared by both scripts. ARGV: expected position ('*': any), version, identity, refreshed_at,
log length, channel, message, field count, read version, kind, the field names joined by commas;
version and identity compared as decimal strings (versions exceed Lua's exact integers)."""

_APPEND: Final = (
    _CHECK_HEAD
    + """
local delta = cjson.decode(ARGV[12])
local n = tonumber(ARGV[8])
for i = 1, n do
  local change = delta[ARGV[12 + i]]
  if change then
    local removed, added = change['-'], change['+']
    for j = 1, #removed, 5000 do
      redis.call('SREM', KEYS[2 + i], unpack(removed, j, math.min(j + 4999, #removed)))
    end
    for j = 1, #added, 5000 do
      redis.call('SADD', KEYS[2 + i], unpack(added, j, math.min(j + 4999, #added)))
    end
  end
end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'prev', pos,
  'kind', 'delta', 'version', ARGV[2], 'identity', ARGV[3], 'at', ARGV[4], 'read', ARGV[9],
  'delta', ARGV[12])
redis.call('HSET', KEYS[1], 'pos', id, 'version', ARGV[2], 'identity', ARGV[3], 'at', ARGV[4],
  'read', ARGV[9], 'fields', ARGV[11])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return {'ok', id}
"""
)
"""KEYS: head, log, then one terms key per field. ARGV[12]: the delta's JSON; ARGV[13..]: the
field names in KEYS order."""

_REPLACE: Final = (
    _CHECK_HEAD
    + """
local n = tonumber(ARGV[8])
for i = 1, n do
  if redis.call('EXISTS', KEYS[2 + n + i]) == 1 then
    redis.call('RENAME', KEYS[2 + n + i], KEYS[2 + i])
    redis.call('PERSIST', KEYS[2 + i])
  else
    redis.call('DEL', KEYS[2 + i])
  end
end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'prev', pos,
  'kind', 'reset', 'version', ARGV[2], 'identity', ARGV[3], 'at', ARGV[4], 'read', ARGV[9])
redis.call('HSET', KEYS[1], 'pos', id, 'version', ARGV[2], 'identity', ARGV[3], 'at', ARGV[4],
  'read', ARGV[9], 'fields', ARGV[11])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return {'ok', id}
"""
)
"""KEYS: head, log, the terms keys, then the staged keys (same order)."""

Outcome = Literal["ok", "moved", "stale", "identity"]


@dataclass(frozen=True, slots=True)
class Head:
    """Where the state in Redis is: log position, database version and identity."""

    position: str
    version: int
    identity: str
    refreshed_at: float
    read_version: int = 0
    """The newest database version a read behind the state was taken at (``version`` can be
    higher: every entry gets a version of its own, even two read at one snapshot)."""
    fields: tuple[str, ...] | None = None
    """The fields the last writer was configured with (None: written before heads had them)."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    outcome: Outcome
    position: str
    """The new head on success; otherwise the head that made the write fail."""


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One stream entry: a delta on top of ``prev``, or a reset (load the full state)."""

    id: str
    prev: str
    kind: str
    version: int
    identity: str
    refreshed_at: float
    delta: Delta | None
    size: int = 0
    """Bytes of the entry's field values as read from Redis (what following it costs)."""
    read_version: int = 0
    """See :attr:`Head.read_version`."""


def position_key(position: str) -> tuple[int, int]:
    """Stream ids ``<ms>-<seq>`` in order ('' sorts first)."""
    if not position:
        return (-1, -1)
    ms, _, seq = position.partition("-")
    return (int(ms), int(seq or 0))


class VocabularyLog:
    """Reads and writes the log; one object per Redis client, no I/O until used."""

    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        prefix = f"{settings.key_prefix}vocabsync:"
        self.head_key = f"{prefix}head"
        self.log_key = f"{prefix}log"
        self.fields = settings.sources.fields
        """The configured fields: one terms key each, in this order."""
        self.term_keys = [f"{prefix}terms:{name}" for name in self.fields]
        self.bytes_written = 0
        """Bytes of delta and term payload sent to Redis (deterministic cost, for tests)."""

    # --- errors ------------------------------------------------------------------------------

    def _unavailable(self, doing: str, exc: BaseException) -> RedisUnavailableError:
        return RedisUnavailableError(
            f"cannot {doing} at {self.settings.redis_display}: "
            f"{describe_redis_error(self.settings, exc)}"
        )

    # --- reads -------------------------------------------------------------------------------

    async def head(self) -> Head | None:
        try:
            raw = await self.client.hgetall(self.head_key)
        except ResponseError as exc:
            raise SnapshotFormatError(f"the vocabulary head is unreadable: {exc}") from None
        except (RedisError, OSError) as exc:
            raise self._unavailable("read the vocabulary head", exc) from None
        return _parse_head(raw)

    async def read_full(self) -> tuple[Head, Snapshot] | None:
        """The whole state and its head, read atomically (None when Redis holds no state)."""
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hgetall(self.head_key)
                for key in self.term_keys:
                    pipe.smembers(key)
                head_raw, *members = await pipe.execute()
        except ResponseError as exc:  # a key of the wrong type: not a state of ours
            raise SnapshotFormatError(f"the vocabulary state is unreadable: {exc}") from None
        except (RedisError, OSError) as exc:
            raise self._unavailable("read the vocabulary state", exc) from None
        head = _parse_head(head_raw)
        if head is None:
            return None
        try:
            lists = {
                name: [term.decode() for term in found]
                for name, found in zip(self.fields, members, strict=True)
            }
        except UnicodeDecodeError as exc:
            raise SnapshotFormatError(f"a term in Redis is not UTF-8: {exc}") from exc
        snapshot = Snapshot.from_lists(
            lists, head.version, head.refreshed_at, head.identity, self.fields
        )
        return head, snapshot

    async def contains(self, position: str) -> bool:
        """True when the log still holds the entry at ``position`` (so it can be followed)."""
        try:
            found = await self.client.xrange(self.log_key, position, position, count=1)
        except ResponseError:
            return False
        except (RedisError, OSError) as exc:
            raise self._unavailable("read the vocabulary log", exc) from None
        return bool(found)

    async def read_after(
        self, position: str, *, block_ms: int | None = None, count: int = 1000
    ) -> list[LogEntry]:
        """Entries after ``position`` (new ones only when ''), waiting up to ``block_ms``."""
        try:
            found = await self.client.xread(
                {self.log_key: position or "$"}, count=count, block=block_ms
            )
        except (RedisError, OSError) as exc:
            raise self._unavailable("read the vocabulary log", exc) from None
        entries: list[LogEntry] = []
        streams: list[Any] = list(found or ())
        for _, items in streams:
            for entry_id, fields in items:
                entries.append(_parse_entry(entry_id, fields))
        return entries

    # --- writes ------------------------------------------------------------------------------

    def _argv(
        self, expected: str, snapshot_version: int, identity: str, kind: str, read_version: int
    ) -> list[Any]:
        return [
            expected,
            str(snapshot_version),
            identity,
            repr(time.time()),
            self.settings.log_length,
            self.settings.redis_channel,
            "*",
            len(self.fields),
            str(read_version),
            kind,
            ",".join(self.fields),
        ]

    async def append(
        self,
        expected: str,
        delta: Delta,
        version: int,
        identity: str,
        *,
        message: str = "*",
        read_version: int | None = None,
    ) -> WriteResult:
        """Apply ``delta`` if the head is still ``expected`` and ``version`` is not older.

        ``read_version``: the database version the delta was read at (default ``version``).
        """
        payload = delta.to_json()
        read = version if read_version is None else read_version
        argv = self._argv(expected, version, identity, "delta", read)
        argv[6] = message
        try:
            result = await self.client.eval(
                _APPEND,
                2 + len(self.fields),
                self.head_key,
                self.log_key,
                *self.term_keys,
                *argv,
                payload,
                *self.fields,
            )
        except (RedisError, OSError) as exc:
            raise self._unavailable("append to the vocabulary log", exc) from None
        self.bytes_written += len(payload.encode())
        return _write_result(result)

    async def replace(self, expected: str, snapshot: Snapshot) -> WriteResult:
        """Replace the whole state with ``snapshot`` (a reset entry tells readers to reload).

        The new sets are staged under temporary keys in chunks, then swapped in atomically.
        """
        nonce = secrets.token_hex(6)
        staged = [f"{key}:staged:{nonce}" for key in self.term_keys]
        written: WriteResult | None = None
        try:
            for key, name in zip(staged, self.fields, strict=True):
                terms = snapshot.get(name).sorted()
                for start in range(0, len(terms), CHUNK):
                    chunk = terms[start : start + CHUNK]
                    async with self.client.pipeline(transaction=False) as pipe:
                        pipe.sadd(key, *chunk)
                        pipe.expire(key, 600)
                        await pipe.execute()
                    self.bytes_written += sum(len(t.encode()) for t in chunk)
            written = _write_result(
                await self.client.eval(
                    _REPLACE,
                    2 + 2 * len(self.fields),
                    self.head_key,
                    self.log_key,
                    *self.term_keys,
                    *staged,
                    *self._argv(
                        expected, snapshot.version, snapshot.identity, "reset", snapshot.version
                    ),
                )
            )
        except (RedisError, OSError) as exc:
            raise self._unavailable("write the vocabulary state", exc) from None
        finally:
            if written is None or written.outcome != "ok":
                await _forget(self.client, staged)
        return written


async def _forget(client: aioredis.Redis, keys: Sequence[str]) -> None:
    try:
        async with asyncio.timeout(5):
            await client.delete(*keys)
    except (RedisError, OSError, TimeoutError):
        pass  # they expire on their own


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _write_result(result: Any) -> WriteResult:
    outcome, position = (_text(v) for v in result)
    assert outcome in ("ok", "moved", "stale", "identity"), outcome
    return WriteResult(outcome, position)  # type: ignore[arg-type]


def _parse_head(raw: dict[Any, Any]) -> Head | None:
    """None when there is no head; a head that is not ours raises :class:`SnapshotFormatError`."""
    if not raw:
        return None
    try:
        values = {_text(k): _text(v) for k, v in raw.items()}
        position_key(values["pos"])
        version = int(values["version"])
        return Head(
            position=values["pos"],
            version=version,
            identity=values.get("identity", ""),
            refreshed_at=float(values.get("at", 0.0)),
            read_version=int(values.get("read") or version),
            fields=tuple(values["fields"].split(",")) if values.get("fields") else None,
        )
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise SnapshotFormatError(f"the vocabulary head is not ours: {exc!r}") from None


def _parse_entry(entry_id: Any, fields: dict[Any, Any]) -> LogEntry:
    values = {_text(k): v for k, v in fields.items()}
    size = sum(len(k) + len(v) for k, v in fields.items() if isinstance(v, bytes | str))
    kind = _text(values.get("kind", b""))
    delta: Delta | None = None
    try:
        if kind == "delta":
            delta = Delta.from_json(values["delta"])
        version = int(_text(values.get("version", b"0")))
        refreshed_at = float(_text(values.get("at", b"0")))
        read_version = int(_text(values.get("read", b"")) or version)
    except (KeyError, ValueError, SnapshotFormatError):
        kind, delta, version, refreshed_at, read_version = f"corrupt {kind}", None, 0, 0.0, 0
    return LogEntry(
        id=_text(entry_id),
        prev=_text(values.get("prev", b"")),
        kind=kind,
        version=version,
        identity=_text(values.get("identity", b"")),
        refreshed_at=refreshed_at,
        delta=delta,
        size=size,
        read_version=read_version,
    )
