"""The deployment the soak runs: private servers, TCP proxies on every link, bridges, instances.

Each bridge reaches PostgreSQL (both addresses of the primary/standby pair) through proxies of
its own, and every process reaches Redis (both nodes and the three Sentinels) through proxies
shared by all that apply each process's own mode to its connections (bench/_proxy.py,
bench/_soak_servers.py), so a fault can blackhole or slow exactly one process's link.
Instances reach PostgreSQL directly (their fallback path; the soak does not fault it). Every
process is a real ``vocabsync bridge`` / ``vocabsync serve``, started through bench/_stack.py.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import psycopg
from _proxy import ProxyHub
from _soak_servers import ChaosServers
from _stack import ManagedProcess, Servers, cli_argv, demo_vocabulary, find_free_port, seed_demo

FIELDS = (
    "projects",
    "project_locations",
    "expense_files",
    "cashflow_files",
    "expense_categories",
    "cashflow_categories",
)
SOURCES = {
    "projects": ("Project", "project_name"),
    "project_locations": ("Project", "location"),
    "expense_files": ("Expenses", "file_name"),
    "cashflow_files": ("CashFlow", "file_name"),
    "expense_categories": ("ExpensesColumn", "column_name"),
    "cashflow_categories": ("CashFlowColumn", "column_name"),
}
DATABASE_LISTS_SQL = "SELECT " + ", ".join(
    f'ARRAY(SELECT DISTINCT {column}::text COLLATE "C" FROM "{table}" '
    f"WHERE btrim({column}::text, E' \\t\\r\\n') <> '')"
    for table, column in SOURCES.values()
)
"""The six lists as the loader defines them (distinct text, NULL and blank values dropped)."""

CRASHES = (
    "[session_crashed]",
    "[listener_crashed]",
    "[session_abandoned]",
    "[snapshot_listener_failed]",
    "[match_index_failed]",
    "[update_callback_failed]",
    "Traceback (most recent call last)",
)
"""Log lines that mean an unexpected exception in a process, whether or not it converged."""
SUSPECT = ("[malformed_message]", "[redis_value_corrupted]", "[unknown_table]")
"""Log lines that should not appear when only vocabsync writes the log (counted, shown)."""

HTTP_TIMEOUT_S = 5.0
START_TIMEOUT_S = 120.0

Lists = dict[str, frozenset[str]]
Kind = Literal["bridge", "instance"]
_T = TypeVar("_T")


class Database:
    """The soak's own connection for reading; reconnects after a restart or a terminated
    session (the soak's faults do both)."""

    def __init__(self, url: str, timeout_s: float = 60.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._conn: psycopg.Connection[Any] | None = None

    def run(self, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(
                        self.url, autocommit=True, connect_timeout=5, application_name="soak"
                    )
                return work(self._conn)
            except psycopg.OperationalError:
                self.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


@dataclass
class Member:
    """One bridge or instance process, its port, and its links (proxy names)."""

    name: str
    kind: Kind
    process: ManagedProcess
    port: int
    """HTTP port of an instance, metrics port of a bridge."""
    links: dict[str, list[tuple[str, str | None]]]
    """'postgres' / 'redis' -> the proxies of that link: (name in the hub, owner), the owner
    being this member's name on a shared proxy, None on a proxy of its own."""
    expected_down: bool = False
    """True while the soak itself has killed or stopped it."""
    etag: str | None = None
    lists: Lists | None = None
    source: str = ""


@dataclass
class Death:
    name: str
    code: int | None
    log_tail: str


@dataclass
class SoakStack:
    servers: Servers | ChaosServers
    hub: ProxyHub
    bridge_count: int = 2
    instance_count: int = 3
    env: Mapping[str, str] = field(default_factory=dict)
    proxied: bool = True
    members: dict[str, Member] = field(default_factory=dict)
    deaths: list[Death] = field(default_factory=list)

    # --- start ------------------------------------------------------------------------------

    def start(self) -> None:
        self.servers.migrate()
        seed_demo(self.servers.database_url, demo_vocabulary())
        for index in range(self.bridge_count):
            self._add("bridge", f"bridge-{chr(ord('a') + index)}")
        for index in range(self.instance_count):
            self._add("instance", f"api-{index + 1}")
        deadline = time.monotonic() + START_TIMEOUT_S
        for member in self.instances:
            while not self.ready(member):
                member.process.check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{member.name} not ready:\n{member.process.log_tail()}")
                time.sleep(0.1)

    def owners(self) -> dict[int, str]:
        """pid -> name of every process started (what the shared proxies tell apart)."""
        found = {}
        for member in list(self.members.values()):
            process = member.process.process
            if process is not None:
                found[process.pid] = member.name
        return found

    def _add(self, kind: Kind, name: str) -> Member:
        env = self.servers.child_env()
        env.update(self.env)
        env["VOCABSYNC_INSTANCE_NAME"] = name
        links: dict[str, list[tuple[str, str | None]]] = {}
        if self.proxied:
            assert isinstance(self.servers, ChaosServers), "proxies need the soak's servers"
            links["redis"] = [(link, name) for link in self.servers.redis_links]
            if kind == "bridge":
                proxies = [
                    self.hub.add(f"{name}:postgres:{index}", "127.0.0.1", port)
                    for index, port in enumerate(self.servers.postgres_ports)
                ]
                env["DATABASE_URL"] = self.servers.postgres_url([p.port for p in proxies])
                links["postgres"] = [(p.name, None) for p in proxies]
        port = find_free_port()
        if kind == "bridge":
            argv = cli_argv("bridge", "--metrics-port", str(port), "--metrics-host", "127.0.0.1")
        else:
            argv = cli_argv("serve", "--host", "127.0.0.1", "--port", str(port))
        process = ManagedProcess(name, argv, env, self.servers.log_dir).start()
        member = Member(name, kind, process, port, links)
        self.members[name] = member
        return member

    @property
    def bridges(self) -> list[Member]:
        return [m for m in self.members.values() if m.kind == "bridge"]

    @property
    def instances(self) -> list[Member]:
        return [m for m in self.members.values() if m.kind == "instance"]

    # --- HTTP -------------------------------------------------------------------------------

    @staticmethod
    def _get(port: int, path: str, headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
        try:
            conn.request("GET", path, headers=dict(headers or {}))
            response = conn.getresponse()
            body = response.read()
            return response.status, (response.getheader("ETag"), body)
        except (OSError, http.client.HTTPException) as exc:
            return 0, str(exc)
        finally:
            conn.close()

    def ready(self, member: Member) -> bool:
        status, _ = self._get(member.port, "/ready")
        return status == 200

    def bridge_active(self, member: Member) -> bool | None:
        """What the bridge's metrics say; None when it does not answer."""
        status, answer = self._get(member.port, "/metrics")
        if status != 200:
            return None
        for line in answer[1].decode().splitlines():
            if line.startswith("vocabsync_bridge_active "):
                return float(line.split()[1]) == 1.0
        return None

    def active_bridges(self) -> list[Member]:
        return [m for m in self.bridges if not m.expected_down and self.bridge_active(m)]

    def served(self, member: Member) -> Lists | None:
        """The six lists ``member`` serves from its snapshot (None: no answer, or a read-through
        in fallback). Polls cheaply: the ETag of the last answer goes in If-None-Match."""
        headers = {"If-None-Match": member.etag} if member.etag and member.lists else {}
        status, answer = self._get(member.port, "/api/vocabulary", headers)
        if status == 304:
            return member.lists if member.source == "memory" else None
        if status != 200:
            return None
        etag, body = answer
        document = json.loads(body)
        member.etag = etag
        member.source = str(document.get("meta", {}).get("source", ""))
        member.lists = {name: frozenset(document.get(name, ())) for name in FIELDS}
        return member.lists if member.source == "memory" else None

    # --- the database ---------------------------------------------------------------------

    @staticmethod
    def database_lists(conn: psycopg.Connection[Any]) -> Lists:
        row = conn.execute(DATABASE_LISTS_SQL).fetchone()
        assert row is not None
        return {name: frozenset(values) for name, values in zip(FIELDS, row, strict=True)}

    # --- processes ------------------------------------------------------------------------

    def restart(self, member: Member) -> None:
        """Start a process that was killed, as a supervisor would."""
        member.process.start()
        member.etag, member.lists = None, None
        member.expected_down = False

    def check_deaths(self) -> list[Death]:
        """Processes that exited although the soak did not stop them; each is restarted."""
        found = []
        for member in self.members.values():
            if member.expected_down or member.process.alive:
                continue
            process = member.process.process
            death = Death(
                member.name,
                None if process is None else process.returncode,
                member.process.log_tail(40),
            )
            found.append(death)
            self.deaths.append(death)
            self.restart(member)
        return found

    def log_findings(self) -> tuple[list[str], dict[str, int]]:
        """Crash lines (with the process name) and counts of suspect lines, from every log."""
        crashes: list[str] = []
        suspect: dict[str, int] = {}
        for member in self.members.values():
            try:
                text = member.process.log_path.read_text(errors="replace")
            except FileNotFoundError:
                continue
            for line in text.splitlines():
                if any(marker in line for marker in CRASHES):
                    crashes.append(f"{member.name}: {line[:300]}")
                for marker in SUSPECT:
                    if marker in line:
                        key = f"{member.name} {marker}"
                        suspect[key] = suspect.get(key, 0) + 1
        return crashes, suspect

    def stop(self) -> list[str]:
        """SIGTERM every process; names those that did not exit cleanly."""
        unclean = []
        for member in self.members.values():
            code = member.process.terminate(grace=15)
            if code not in (0, None, -15):
                unclean.append(f"{member.name} exited with {code}")
        return unclean
