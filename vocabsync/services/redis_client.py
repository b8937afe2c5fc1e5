"""Redis clients configured the one way this tool uses them: timeouts on every call, no hidden
retries (our own loops reconnect with backoff and resync), passwords never in messages."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from vocabsync.config import Settings


def redis_client(settings: Settings, *, blocking_reads: bool = False) -> aioredis.Redis:
    """A client with timeouts on every call; no I/O until first used.

    A client that blocks for new log entries (XREAD BLOCK) gets a read timeout longer than its
    longest block instead of none, so a silent half-open connection still fails in seconds.
    """
    read_timeout = settings.network_timeout
    if blocking_reads:
        read_timeout += settings.health_check_interval
    return aioredis.Redis.from_url(
        settings.redis_connection_url,
        socket_connect_timeout=settings.network_timeout,
        socket_timeout=read_timeout,
        socket_keepalive=True,
        health_check_interval=0 if blocking_reads else settings.health_check_interval,
        # redis-py 8 retries by default: that would only hide an outage for seconds per command.
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        decode_responses=False,
    )


def describe_redis_error(settings: Settings, exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return settings.redact(f"{type(exc).__name__}: {text}")
