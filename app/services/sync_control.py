"""The rollback switch: a Redis key that tells every process the real-time path is off.

``vocabsync rollback`` drops the triggers (the design document's rollback plan) and sets this key;
bridges stop publishing and API instances serve reads from PostgreSQL (fallback mode) until
``vocabsync rollback --reenable`` reinstalls the triggers and clears it. Processes look at the
key at every health check, so the switch takes effect within seconds everywhere.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aioredis

from app.config import Settings


def disabled_key(settings: Settings) -> str:
    return f"{settings.key_prefix}vocabsync:disabled"


async def read_disabled(client: aioredis.Redis, settings: Settings) -> dict[str, Any] | None:
    """The switch's document when real-time sync is disabled, else None."""
    raw = await client.get(disabled_key(settings))
    if raw is None:
        return None
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        document = None
    return document if isinstance(document, dict) else {"reason": "unreadable switch value"}


async def set_disabled(client: aioredis.Redis, settings: Settings, reason: str) -> None:
    await client.set(disabled_key(settings), json.dumps({"since": time.time(), "reason": reason}))


async def clear_disabled(client: aioredis.Redis, settings: Settings) -> None:
    await client.delete(disabled_key(settings))
