"""Health keys with a TTL in Redis (as arq does): who is alive, and in what state.

Every bridge and API instance refreshes ``<prefix>vocabsync:<kind>:<id>`` with a JSON document
about itself; a process that dies stops refreshing and its key expires. ``vocabsync status``
reads them to tell an operator which bridge is active and whether any instance is behind.

The ids are also kept in an index, the sorted set ``<prefix>vocabsync:heartbeats:<kind>`` scored
by each key's expiry time, so readers find the heartbeats in two round trips instead of scanning
a keyspace the application may share with millions of keys. Members are pruned when their expiry
time has passed (at every write and read) or their key is gone (at every read); the index
itself expires with the last heartbeat written.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any, Literal

import redis.asyncio as aioredis

from vocabsync.config import Settings

Kind = Literal["bridge", "instance"]


def process_identity() -> str:
    """``host:pid``, unique per running process on a host."""
    return f"{socket.gethostname()}:{os.getpid()}"


def heartbeat_key(settings: Settings, kind: Kind, identity: str) -> str:
    return f"{settings.key_prefix}vocabsync:{kind}:{identity}"


def stale_after(settings: Settings) -> float:
    """A heartbeat older than this means the process is hung or dead (two beats missed)."""
    return 3 * settings.health_check_interval + settings.network_timeout


def heartbeat_ttl(settings: Settings) -> int:
    """How long a key outlives its last beat, so a dead process is *seen* as stale for a while
    (a minute at least) before it disappears from ``vocabsync status``."""
    return max(60, round(10 * stale_after(settings)))


def heartbeat_index_key(settings: Settings, kind: Kind) -> str:
    """The sorted set of the ids of ``kind`` that have a heartbeat, scored by expiry time."""
    return f"{settings.key_prefix}vocabsync:heartbeats:{kind}"


async def write_heartbeat(
    client: aioredis.Redis, settings: Settings, kind: Kind, identity: str, state: dict[str, Any]
) -> None:
    now = time.time()
    ttl = heartbeat_ttl(settings)
    document = {"id": identity, "kind": kind, "heartbeat_at": now, **state}
    index = heartbeat_index_key(settings, kind)
    async with client.pipeline(transaction=True) as pipe:
        pipe.set(heartbeat_key(settings, kind, identity), json.dumps(document), ex=ttl)
        pipe.zadd(index, {identity: now + ttl})
        pipe.zremrangebyscore(index, "-inf", now)
        pipe.expire(index, ttl)
        await pipe.execute()


async def remove_heartbeat(
    client: aioredis.Redis, settings: Settings, kind: Kind, identity: str
) -> None:
    async with client.pipeline(transaction=True) as pipe:
        pipe.delete(heartbeat_key(settings, kind, identity))
        pipe.zrem(heartbeat_index_key(settings, kind), identity)
        await pipe.execute()


async def read_heartbeats(
    client: aioredis.Redis, settings: Settings, kind: Kind
) -> list[dict[str, Any]]:
    """Every live heartbeat of ``kind``, through the index; unreadable documents are skipped."""
    index = heartbeat_index_key(settings, kind)
    async with client.pipeline(transaction=False) as pipe:
        pipe.zremrangebyscore(index, "-inf", time.time())
        pipe.zrange(index, 0, -1)
        _, members = await pipe.execute()
    identities = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
    if not identities:
        return []
    raws = await client.mget([heartbeat_key(settings, kind, i) for i in identities])
    gone = [identity for identity, raw in zip(identities, raws, strict=True) if raw is None]
    if gone:
        await client.zrem(index, *gone)
    found: list[dict[str, Any]] = []
    for raw in raws:
        if raw is None:
            continue
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(document, dict):
            found.append(document)
    return sorted(found, key=lambda d: str(d.get("id")))
