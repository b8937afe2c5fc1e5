"""Health keys with a TTL in Redis (as arq does): who is alive, and in what state.

Every bridge and API instance refreshes ``<prefix>vocabsync:<kind>:<id>`` with a JSON document
about itself; a process that dies stops refreshing and its key expires. ``vocabsync status``
reads them to tell an operator which bridge is active and whether any instance is behind.
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


async def write_heartbeat(
    client: aioredis.Redis, settings: Settings, kind: Kind, identity: str, state: dict[str, Any]
) -> None:
    document = {"id": identity, "kind": kind, "heartbeat_at": time.time(), **state}
    await client.set(
        heartbeat_key(settings, kind, identity), json.dumps(document), ex=heartbeat_ttl(settings)
    )


async def remove_heartbeat(
    client: aioredis.Redis, settings: Settings, kind: Kind, identity: str
) -> None:
    await client.delete(heartbeat_key(settings, kind, identity))


async def read_heartbeats(
    client: aioredis.Redis, settings: Settings, kind: Kind
) -> list[dict[str, Any]]:
    """Every live heartbeat of ``kind``; unreadable documents are skipped."""
    pattern = heartbeat_key(settings, kind, "*")
    found: list[dict[str, Any]] = []
    async for key in client.scan_iter(match=pattern, count=100):
        raw = await client.get(key)
        if raw is None:
            continue
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(document, dict):
            found.append(document)
    return sorted(found, key=lambda d: str(d.get("id")))
