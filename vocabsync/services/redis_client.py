"""Redis clients configured the one way this tool uses them: timeouts on every call, no hidden
retries (our own loops reconnect with backoff and resync), passwords never in messages.

Every Redis client of the bridge, the instances, ``vocabsync status`` and ``vocabsync rollback``
is made here, so pointing them all at Redis Sentinel (REDIS_SENTINELS, REDIS_SENTINEL_MASTER) is
this module's business alone. With Sentinels the client asks them for the master's address each
time it opens a connection; after a failover the next connection goes to the new master. A
connection still open to a demoted master fails its next write with READONLY, which redis-py's
Sentinel connection turns into a ``ConnectionError``: the session that used it ends, and the
supervisor starts a new one, which catches up with the (new) master's log like after any
reconnect. Sentinels that cannot be reached or know no master raise ``MasterNotFoundError``, a
``ConnectionError`` too, so failover needs no error handling of its own anywhere else.
"""

from __future__ import annotations

import contextlib
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
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
    options: dict[str, Any] = {
        "socket_connect_timeout": settings.network_timeout,
        "socket_timeout": read_timeout,
        "socket_keepalive": True,
        "health_check_interval": 0 if blocking_reads else settings.health_check_interval,
        # redis-py 8 retries by default: that would only hide an outage for seconds per command.
        "retry": Retry(NoBackoff(), 0),
        "retry_on_timeout": False,
        "decode_responses": False,
    }
    if settings.uses_sentinel:
        return _sentinel_master_client(settings, options)
    return aioredis.Redis.from_url(settings.redis_connection_url, **options)


class SentinelMasterClient(aioredis.Redis):
    """The master of a Sentinel-monitored group; closing it closes the Sentinel clients too.

    (redis-py's ``master_for`` leaves the Sentinel's own connections open when its client is
    closed; callers here close what :func:`redis_client` gave them and nothing else.)
    """

    sentinel_manager: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            sentinel, self.sentinel_manager = self.sentinel_manager, None
            if sentinel is not None:
                with contextlib.suppress(Exception):
                    await sentinel.aclose()


def _sentinel_master_client(settings: Settings, options: dict[str, Any]) -> aioredis.Redis:
    """A client of the master the Sentinels name, with REDIS_URL's credentials, db and TLS."""
    # Everything of the Redis URL but its address: user, password, db, ssl_* query options.
    from_url: dict[str, Any] = dict(parse_url(settings.redis_connection_url))
    for key in ("host", "port", "path", "connection_class"):
        from_url.pop(key, None)
    if "password" not in from_url and settings.redis_password is not None:
        from_url["password"] = settings.redis_password.get_secret_value()
    tls = settings.redis_tls
    tls_options = {key: value for key, value in from_url.items() if key.startswith("ssl_")}
    sentinel_options: dict[str, Any] = {
        "socket_connect_timeout": settings.network_timeout,
        "socket_timeout": settings.network_timeout,
        "socket_keepalive": True,
        "retry": Retry(NoBackoff(), 0),
        **({"ssl": True, **tls_options} if tls else {}),
    }
    if settings.redis_sentinel_password is not None:
        sentinel_options["password"] = settings.redis_sentinel_password.get_secret_value()
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(settings.redis_sentinels or ()), sentinel_kwargs=sentinel_options
    )
    master: SentinelMasterClient = sentinel.master_for(
        str(settings.redis_sentinel_master),
        redis_class=SentinelMasterClient,
        # The pool takes ``ssl`` to pick its TLS connection class.
        **{**options, **from_url, **({"ssl": True} if tls else {})},
    )
    master.sentinel_manager = sentinel
    return master


def describe_redis_error(settings: Settings, exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return settings.redact(f"{type(exc).__name__}: {text}")
