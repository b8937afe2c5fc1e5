"""The soak's servers: PostgreSQL with a streaming standby, Redis under Sentinel, and their faults.

PostgreSQL is a primary and a standby (``pg_basebackup -R``, asynchronous streaming
replication). Every DATABASE_URL lists both addresses with ``target_session_attrs=read-write``,
as a deployment with failover does, so bridges, instances, writers and the soak itself follow a
promotion on their own. The two addresses never change: after a promotion the new standby is
made from the new primary (``pg_basebackup`` again) on the port the old primary listened on, so
promotion can happen again and again. Replication is asynchronous on purpose: a commit the old
primary acknowledged and never shipped is lost by the promotion, which is what the issue asks the
system to handle (it must disappear from every instance); the soak counts those separately.

Redis is a master, a replica and three Sentinels; processes get ``REDIS_SENTINELS`` and
``REDIS_SENTINEL_MASTER``. Every Redis node and every Sentinel sits behind one *shared* proxy
(bench/_proxy.py) that tells its clients apart by process: the Sentinels hand out one address per
node to every client, so a per-process proxy cannot be put in a process's URL; the shared proxy
applies each process's own mode to that process's connections instead, so "instance↔Redis
blackholed" cuts that instance off from both nodes and all Sentinels, and nothing else.
The nodes announce the proxies' addresses (``replica-announce-port``), the Sentinels monitor
the master through its proxy, so the addresses the Sentinels hand out are the proxies'. A killed
master comes back (empty) as a replica of the new master, so a later kill has a replica to
promote again.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import redis
from _proxy import OwnerLookup, ProxyHub
from _stack import (
    LocalPostgres,
    LocalRedis,
    LocalRedisSentinel,
    StandbyPostgres,
    cli_argv,
    find_free_port,
    in_recovery,
    resolve_flavor,
    run_migrate,
    server_free_environment,
)

MASTER_NAME = "vocabsync-soak"
READY_TIMEOUT_S = 60.0
POSTGRES_CONF = {"wal_keep_size": "512MB"}
"""Enough WAL kept for a standby that fell behind during a fault to catch up without a slot."""
_T = TypeVar("_T")


def wait_for(
    condition: Callable[[], _T | None], what: str, timeout_s: float = READY_TIMEOUT_S
) -> _T:
    """Poll ``condition`` (connection errors count as "not yet") until it returns a value."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            result = condition()
            if result is not None and result is not False:
                return result
        except (redis.RedisError, psycopg.Error, OSError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what} ({last!r})")
        time.sleep(0.05)


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)


def _pairs(raw: Any) -> dict[str, str]:
    """A Sentinel reply entry (flat list or dict) as a dict of strings."""

    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    if isinstance(raw, dict):
        return {text(k): text(v) for k, v in raw.items()}
    return {text(k): text(v) for k, v in zip(raw[::2], raw[1::2], strict=True)}


class RedisNode:
    """One Redis node at a fixed port behind a fixed shared proxy; restarted as a new process
    (empty: no persistence) as master or as a replica."""

    def __init__(self, name: str, hub: ProxyHub, owners: OwnerLookup, log_dir: Path) -> None:
        self.name = name
        self.port = find_free_port()
        self.link = hub.add(f"redis:{name}", "127.0.0.1", self.port, owners)
        self.log_dir = log_dir
        self.server: LocalRedis | None = None

    @property
    def proxy_port(self) -> int:
        return self.link.port

    def start(self, replica_of: RedisNode | None = None) -> None:
        args = ["--replica-announce-ip", "127.0.0.1", "--replica-announce-port"]
        args.append(str(self.proxy_port))
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of.proxy_port)]
        self.server = LocalRedis(flavor=resolve_flavor(), port=self.port, extra_args=args)
        self.server.start()

    def stop(self) -> None:
        """SIGTERM (data gone: nothing is persisted)."""
        if self.server is not None:
            self.server.cleanup()
            self.server = None

    def kill(self) -> None:
        if self.server is not None:
            self.server.kill()
            self.server.cleanup()
            self.server = None

    def replication(self) -> dict[str, str]:
        with _client(self.port) as client:
            info = client.info("replication")
        return {str(k): str(v) for k, v in info.items()}


class ChaosServers:
    """PostgreSQL primary + standby and a Redis Sentinel group, private, for the whole soak."""

    def __init__(self, hub: ProxyHub, owners: OwnerLookup) -> None:
        self.hub = hub
        self.log_dir = Path(tempfile.mkdtemp(prefix="vocabsync-soak-"))
        self.primary = LocalPostgres(flavor=resolve_flavor(), extra_conf=POSTGRES_CONF)
        self.standby: StandbyPostgres | None = None
        self.postgres_ports: list[int] = []
        self.nodes = [RedisNode(f"node-{n}", hub, owners, self.log_dir) for n in "ab"]
        self.sentinels: list[LocalRedisSentinel] = []
        self.sentinel_links: list[str] = []
        self._owners = owners
        self.promotions = 0
        self.failovers = 0

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> ChaosServers:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def standby_possible(self) -> bool:
        """pg_basebackup is beside the server binaries (some embedded builds lack it)."""
        return StandbyPostgres(self.primary).available

    def start(self) -> None:
        self.primary.start()
        self.postgres_ports = [self.primary.port]
        if self.standby_possible:
            self.make_standby(port=find_free_port())
            assert self.standby is not None
            self.postgres_ports.append(self.standby.port)
        self.nodes[0].start()
        self.nodes[1].start(replica_of=self.nodes[0])
        self.wait_replica_synced(self.nodes[1])
        for index in range(3):
            sentinel = LocalRedisSentinel(
                MASTER_NAME,
                self.nodes[0].proxy_port,
                flavor=resolve_flavor(),
                down_after_ms=1000,
                failover_timeout_ms=3000,
            )
            sentinel.start()
            self.sentinels.append(sentinel)
            link = self.hub.add(f"redis:sentinel-{index}", "127.0.0.1", sentinel.port, self._owners)
            self.sentinel_links.append(link.name)
        self.wait_sentinels_ready()

    def close(self) -> None:
        servers: list[Any] = [*self.sentinels, self.standby, self.primary]
        for server in servers:
            if server is None:
                continue
            try:
                server.cleanup()
            except Exception as exc:  # keep cleaning up the others
                print(f"cleanup of {server!r} failed: {exc}", file=sys.stderr)
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()

    # --- what processes are given -----------------------------------------------------------

    def postgres_url(self, ports: list[int] | None = None) -> str:
        """Both PostgreSQL addresses (or the proxies standing for them), writable only."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in ports or self.postgres_ports)
        return f"postgresql://postgres@{hosts}/postgres?target_session_attrs=read-write"

    @property
    def database_url(self) -> str:
        return self.postgres_url()

    @property
    def redis_links(self) -> list[str]:
        """Every shared proxy a process's Redis traffic goes through (nodes and Sentinels)."""
        return [*(node.link.name for node in self.nodes), *self.sentinel_links]

    def redis_env(self) -> dict[str, str]:
        sentinels = ",".join(f"127.0.0.1:{self.hub.links[n].port}" for n in self.sentinel_links)
        return {
            "REDIS_URL": "redis://127.0.0.1:6379/0",  # only its db/credentials are used
            "REDIS_SENTINELS": sentinels,
            "REDIS_SENTINEL_MASTER": MASTER_NAME,
        }

    def child_env(self) -> dict[str, str]:
        env = server_free_environment()
        env.update(self.redis_env())
        env.update(DATABASE_URL=self.database_url, PYTHONUNBUFFERED="1")
        return env

    def migrate(self) -> None:
        run_migrate(self.child_env())

    def status(self) -> tuple[int, str]:
        """``vocabsync status`` against this deployment: exit code and output."""
        result = subprocess.run(
            cli_argv("status"),
            env=self.child_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        output = result.stdout.strip()
        if result.returncode != 0:
            output += "\n" + result.stderr.strip()[-2000:]
        return result.returncode, output

    # --- PostgreSQL faults -----------------------------------------------------------------

    def restart_postgres(self) -> None:
        """Fast shutdown of the primary (sessions ended, transactions aborted), then start."""
        self.primary.restart()

    def make_standby(self, port: int | None = None) -> None:
        """A new standby of the primary, on ``port`` or the address the primary does not use;
        returns once it streams."""
        if port is None:
            port = next(p for p in self.postgres_ports if p != self.primary.port)
        standby = StandbyPostgres(self.primary, port=port, extra_conf=POSTGRES_CONF)
        standby.start()
        self.standby = standby
        wait_for(standby.streaming, "the new standby to stream")

    def promote_standby(self) -> str:
        """kill -9 the primary, promote the standby (a new timeline); returns at once after the
        promotion. The new standby comes later (:meth:`make_standby`)."""
        old, new = self.primary, self.standby
        if new is None:
            raise RuntimeError("no standby to promote")
        old.kill()
        new.promote()
        if in_recovery(new):
            raise RuntimeError("the standby is still in recovery after pg_promote")
        self.primary, self.standby = new, None
        old.cleanup()
        self.promotions += 1
        return f"{old.port} killed, {new.port} promoted"

    # --- Redis faults ----------------------------------------------------------------------

    def master_node(self) -> RedisNode:
        """The node the Sentinels name as master (every Sentinel that answers agrees)."""

        def named() -> RedisNode | None:
            ports = set()
            for sentinel in self.sentinels:
                with contextlib.suppress(redis.RedisError, OSError):
                    address = sentinel.master_address()
                    ports.add(None if address is None else address[1])
            if len(ports) != 1:
                return None
            port = ports.pop()
            return next((n for n in self.nodes if n.proxy_port == port), None)

        return wait_for(named, "the Sentinels to agree on a master")

    def other(self, node: RedisNode) -> RedisNode:
        return next(n for n in self.nodes if n is not node)

    def restart_redis(self) -> str:
        """SIGTERM the master and start it again on its port, empty, as master (before the
        Sentinels' 1 s down-after: no failover; its replica resyncs to empty too)."""
        node = self.master_node()
        node.stop()
        node.start()
        return f"{node.name}, empty"

    def fail_over_redis(self) -> str:
        """kill -9 the master; wait until the Sentinels promoted the replica; start the old
        master again (empty) as a replica of the new one."""
        old = self.master_node()
        new = self.other(old)
        old.kill()

        def promoted() -> bool:
            return self.master_node() is new and new.replication().get("role") == "master"

        wait_for(promoted, "the Sentinels to promote the replica")
        old.start(replica_of=new)
        self.failovers += 1
        return f"{old.name} killed, {new.name} promoted"

    def wait_replica_synced(self, node: RedisNode | None = None) -> None:
        """Wait until ``node`` (default: whichever node the Sentinels do not name master, asked
        again at every poll) is a replica in sync with its master.

        The Sentinels may fail over once more while a restarted node resyncs (a soak of 413
        faults stopped here: the node waited for had been promoted meanwhile, and a master
        never reports a replication link)."""

        def synced() -> bool:
            replica = node or self.other(self.master_node())
            state = replica.replication()
            return state.get("role") == "slave" and state.get("master_link_status") == "up"

        try:
            wait_for(synced, f"{node.name if node else 'the replica'} to sync from its master")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.describe_redis()}") from exc

    def describe_redis(self) -> str:
        """Each node's replication state and log tail (for a failure message)."""
        parts = []
        for node in self.nodes:
            try:
                state: object = node.replication()
            except (redis.RedisError, OSError) as exc:
                state = exc
            tail = ""
            if node.server is not None:
                with contextlib.suppress(OSError):
                    tail = node.server.log_path.read_text(errors="replace")[-2500:]
            parts.append(
                f"{node.name} (port {node.port}, proxy {node.proxy_port}): {state}\n{tail}"
            )
        return "\n".join(parts)

    def wait_sentinels_ready(self) -> None:
        """Every Sentinel knows the others and a healthy replica: a failover can happen."""
        self.wait_replica_synced()

        def ready() -> bool:
            replica = self.other(self.master_node())  # again: they may have failed over
            for sentinel in self.sentinels:
                state = sentinel.master_state()
                if int(state.get("num-other-sentinels", 0)) < len(self.sentinels) - 1:
                    return False
                with _client(sentinel.port) as client:
                    raw = client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
                replicas = [_pairs(entry) for entry in raw or []]
                healthy = [
                    r
                    for r in replicas
                    if r.get("port") == str(replica.proxy_port)
                    and r.get("flags") == "slave"
                    and r.get("master-link-status") == "ok"
                ]
                if not healthy:
                    return False
            return True

        wait_for(ready, "the Sentinels to see a healthy replica")
