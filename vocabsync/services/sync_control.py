"""The rollback switch: a Redis key that tells every process the real-time path is off.

``vocabsync rollback`` drops the triggers (the design document's rollback plan) and sets this key;
bridges stop publishing and API instances serve reads from PostgreSQL (fallback mode) until
``vocabsync rollback --reenable`` reinstalls the triggers and clears it. Processes look at the
key at every health check, so the switch takes effect within seconds everywhere.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis.asyncio as aioredis

from vocabsync.config import Settings

logger = logging.getLogger(__name__)


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


class SyncSwitch:
    """One process's view of the switch: polled at each health check, each flip logged once."""

    def __init__(self, settings: Settings, effect_when_disabled: str) -> None:
        self.settings = settings
        self.effect_when_disabled = effect_when_disabled
        self.disabled = False

    async def poll(self, client: aioredis.Redis) -> bool:
        """Read the switch; True when it flipped since the last poll."""
        disabled = await read_disabled(client, self.settings) is not None
        if disabled == self.disabled:
            return False
        self.disabled = disabled
        logger.warning(
            "real-time sync %s",
            f"disabled by `vocabsync rollback`: {self.effect_when_disabled}"
            if disabled
            else "re-enabled by `vocabsync rollback --reenable`: resyncing",
            extra={"action": "sync_disabled" if disabled else "sync_reenabled"},
        )
        return True
