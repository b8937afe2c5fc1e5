"""The design document's rollback plan as one command, and its way back.

``rollback``: drop the triggers and the function (no more notifications, writes untouched), then
set the switch in Redis so bridges stop publishing and every API instance serves reads from
PostgreSQL (fallback mode): nothing goes stale while the real-time path is off.
``reenable``: reinstall the triggers (``migrate``), clear the switch; bridges resync and
instances return to the shared snapshot.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from vocabsync.config import Settings
from vocabsync.db.connection import connect
from vocabsync.db.migrate import MigrationReport, migrate
from vocabsync.db.triggers import render_rollback_sql
from vocabsync.errors import RedisUnavailableError
from vocabsync.services.redis_client import describe_redis_error, redis_client
from vocabsync.services.snapshot_store import SnapshotStore
from vocabsync.services.sync_control import clear_disabled, set_disabled

logger = logging.getLogger(__name__)


async def rollback(settings: Settings, reason: str = "vocabsync rollback") -> None:
    """Drop the triggers, then switch every process to database reads."""
    conn = await connect(settings, "rollback")
    try:
        await conn.execute(render_rollback_sql(settings.sources).encode())
    finally:
        await conn.close()
    logger.warning("triggers and function dropped", extra={"action": "triggers_dropped"})
    await _flip(settings, disabled=True, reason=reason)


async def reenable(settings: Settings) -> MigrationReport:
    """Reinstall the triggers, then let bridges and instances return to real-time sync."""
    report = await migrate(settings)
    await _flip(settings, disabled=False, reason="")
    return report


async def _flip(settings: Settings, *, disabled: bool, reason: str) -> None:
    client = redis_client(settings)
    try:
        async with asyncio.timeout(settings.network_timeout):
            if disabled:
                await set_disabled(client, settings, reason)
            else:
                await clear_disabled(client, settings)
            await SnapshotStore(client, settings).publish("*")
    except (RedisError, OSError, TimeoutError) as exc:
        raise RedisUnavailableError(
            f"the triggers were {'dropped' if disabled else 'reinstalled'}, but the switch in "
            f"Redis could not be {'set' if disabled else 'cleared'} "
            f"({describe_redis_error(settings, exc)}); run the command again once Redis answers"
        ) from None
    finally:
        await client.aclose()
