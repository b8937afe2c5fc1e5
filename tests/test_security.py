"""Security: TLS and passwords on every link, key prefixes with Redis ACLs, no secret in any output,
and property-based fuzzing of the HTTP API against its own OpenAPI schema.

The PostgreSQL here accepts TLS connections only (``hostssl`` in its pg_hba.conf), with a
certificate the test makes, and the application's role needs a password; the Redis needs a
password, and an ACL user may only touch keys and channels under its environment's prefix. So the
pipeline tests below pass only if every connection really uses TLS and the credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import psycopg
import pytest
import redis
from hypothesis.errors import HypothesisWarning
from psycopg import sql

from tests.fixtures_app import FAST_ENV, expected_vocabulary, make_settings
from tests.waiting import wait_until, wait_until_async
from vocabsync.config import Settings
from vocabsync.db.connection import connect
from vocabsync.db.migrate import migrate
from vocabsync.local.demo import DemoStack
from vocabsync.local.processes import ManagedProcess, cli_argv, http_json
from vocabsync.local.servers import PG_RUN_AS_USERS, LocalPostgres, LocalRedis, resolve_flavor
from vocabsync.main import create_app
from vocabsync.services.redis_vocabulary import RedisVocabularyCache
from vocabsync.services.vocabulary_sync_bridge import VocabularySyncBridge

PG_PASSWORD = "pg-S3cret-4f9a1c"
REDIS_PASSWORD = "redis-S3cret-b71c0e"
ACL_PASSWORD = "acl-S3cret-77d0e2"
REFRESH_TOKEN = "refresh-S3cret-02ce9b"
READ_TOKEN = "read-S3cret-6a3d90"
WRONG_PG_PASSWORD = "pg-Wr0ng-5d8e33"
WRONG_REDIS_PASSWORD = "redis-Wr0ng-a90f17"
SECRETS = (
    PG_PASSWORD,
    REDIS_PASSWORD,
    ACL_PASSWORD,
    REFRESH_TOKEN,
    READ_TOKEN,
    WRONG_PG_PASSWORD,
    WRONG_REDIS_PASSWORD,
)
APP_ROLE = "vocab_app"
ACL_USER = "vocab-staging"
PREFIX = "staging:"


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret ({secret[:6]}...) appears in {where}"
        assert quote(secret, safe="") not in text, f"a URL-quoted secret appears in {where}"


# --------------------------------------------------------------------------------------------
# Servers: PostgreSQL with TLS only and a password role; Redis with a password and an ACL user
# --------------------------------------------------------------------------------------------


def _server_user() -> pwd.struct_passwd | None:
    """Who runs PostgreSQL: LocalPostgres runs it as an unprivileged user when we are root."""
    if os.geteuid() != 0:
        return None
    for name in PG_RUN_AS_USERS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    pytest.skip(f"running as root and none of {PG_RUN_AS_USERS} exists to run PostgreSQL")


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (also the CA clients verify it with)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = directory / "server.crt", directory / "server.key"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@dataclass
class TlsPostgres:
    server: LocalPostgres
    ca_file: Path

    def create_database(self) -> str:
        name = f"sec_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.server.url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(APP_ROLE)
                )
            )
        return name

    def admin_url(self, database: str) -> str:
        return self.server.url_for(database)

    def app_url(self, database: str, password: str = PG_PASSWORD) -> str:
        return (
            f"postgresql://{APP_ROLE}:{password}@127.0.0.1:{self.server.port}/{database}"
            f"?sslmode=verify-full&sslrootcert={self.ca_file}"
        )


@pytest.fixture(scope="module")
def tls_postgres() -> Iterator[TlsPostgres]:
    # In the system temp dir (pytest's is private to us): the server user must reach the files.
    directory = Path(tempfile.mkdtemp(prefix="vocabsync-tls-"))
    directory.chmod(0o755)
    try:
        yield from _start_tls_postgres(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _start_tls_postgres(directory: Path) -> Iterator[TlsPostgres]:
    cert, key = make_certificate(directory)
    hba = directory / "pg_hba.conf"
    hba.write_text(
        "local all all trust\n"
        "hostssl all postgres 127.0.0.1/32 trust\n"
        f"hostssl all {APP_ROLE} 127.0.0.1/32 scram-sha-256\n"
        "host all all 127.0.0.1/32 reject\n"
        "host all all ::1/128 reject\n"
    )
    user = _server_user()
    for path in (cert, key, hba):
        if user is not None:
            os.chown(path, user.pw_uid, user.pw_gid)
    key.chmod(0o600)  # PostgreSQL refuses a key others can read
    server = LocalPostgres(
        flavor=resolve_flavor(),
        extra_conf={
            "ssl": "on",
            "ssl_cert_file": str(cert),
            "ssl_key_file": str(key),
            "hba_file": str(hba),
        },
    )
    server.start()
    try:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(APP_ROLE), sql.Literal(PG_PASSWORD)
                )
            )
        yield TlsPostgres(server, cert)
    finally:
        server.cleanup()


@pytest.fixture
def tls_db(tls_postgres: TlsPostgres) -> str:
    """A fresh database owned by the application's role."""
    return tls_postgres.create_database()


@pytest.fixture
def secure_redis() -> Iterator[LocalRedis]:
    """Redis with requirepass, plus an ACL user limited to the ``staging:`` keys and channels."""
    server = LocalRedis(flavor=resolve_flavor(), password=REDIS_PASSWORD)
    server.start()
    try:
        admin = redis.Redis.from_url(server.url)
        try:
            admin.acl_setuser(
                ACL_USER,
                enabled=True,
                passwords=[f"+{ACL_PASSWORD}"],
                keys=[f"{PREFIX}*"],
                channels=[f"{PREFIX}*"],
                commands=["+@all"],
            )
        finally:
            admin.close()
        yield server
    finally:
        server.cleanup()


def redis_url(server: LocalRedis, user: str = "", password: str = REDIS_PASSWORD) -> str:
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


# --------------------------------------------------------------------------------------------
# The servers really demand TLS and credentials
# --------------------------------------------------------------------------------------------


def test_servers_refuse_plaintext_and_wrong_credentials(
    tls_postgres: TlsPostgres, tls_db: str, secure_redis: LocalRedis
) -> None:
    url = tls_postgres.app_url(tls_db)
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        assert row == (True,)
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(url.replace("sslmode=verify-full", "sslmode=disable")).close()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(tls_postgres.app_url(tls_db, WRONG_PG_PASSWORD)).close()

    anonymous = redis.Redis.from_url(f"redis://127.0.0.1:{secure_redis.port}/0")
    with pytest.raises(redis.AuthenticationError), contextlib.closing(anonymous):
        anonymous.get("vocabulary")
    staging = redis.Redis.from_url(redis_url(secure_redis, ACL_USER, ACL_PASSWORD))
    with contextlib.closing(staging):
        staging.set(f"{PREFIX}probe", "1")
        with pytest.raises(redis.exceptions.NoPermissionError):
            staging.get("vocabulary")  # another environment's key


# --------------------------------------------------------------------------------------------
# The whole pipeline over TLS, passwords and an ACL user
# --------------------------------------------------------------------------------------------


@pytest.fixture
async def secure_settings(
    tls_postgres: TlsPostgres, tls_db: str, secure_redis: LocalRedis
) -> tuple[Settings, Settings]:
    """(bridge settings: Redis default user; instance settings: the staging ACL user)."""
    bridge = make_settings(tls_postgres.app_url(tls_db), redis_url(secure_redis), key_prefix=PREFIX)
    instance = make_settings(
        tls_postgres.app_url(tls_db),
        redis_url(secure_redis, ACL_USER, ACL_PASSWORD),
        key_prefix=PREFIX,
    )
    await migrate(bridge)
    return bridge, instance


async def test_pipeline_converges_over_tls_postgres_and_password_redis(
    secure_settings: tuple[Settings, Settings],
    tls_postgres: TlsPostgres,
    tls_db: str,
    secure_redis: LocalRedis,
) -> None:
    bridge_settings, instance_settings = secure_settings
    admin_url = tls_postgres.admin_url(tls_db)
    bridge = VocabularySyncBridge(bridge_settings)
    task = asyncio.create_task(bridge.run())
    cache = RedisVocabularyCache(instance_settings)
    try:
        await wait_until_async(lambda: bridge.connected, message="bridge connected over TLS")
        await cache.start_listener()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                """INSERT INTO "Project"(project_name, location) VALUES ('Secure', 'Pasig')"""
            )
            conn.execute("""INSERT INTO "ExpensesColumn"(column_name) VALUES ('Fuel')""")
            conn.execute("""UPDATE "Project" SET location = 'Marikina' WHERE true""")
        expected = expected_vocabulary(admin_url)
        await wait_until_async(
            lambda: cache.get_vocabulary() == expected, message="the instance converged"
        )
        assert cache.in_fallback is False
        assert cache.stats.database_loads <= 1, "changes arrived through Redis, not reloads"

        # Every connection of the application's role is encrypted, the bridge's leader
        # session (the one holding the advisory lock) included.
        with psycopg.connect(admin_url, autocommit=True) as conn:
            sessions = conn.execute(
                "SELECT a.pid, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
                "WHERE a.usename = %s",
                (APP_ROLE,),
            ).fetchall()
            leader = conn.execute(
                "SELECT s.ssl FROM pg_locks l JOIN pg_stat_ssl s USING (pid) "
                "WHERE l.locktype = 'advisory' AND l.granted"
            ).fetchall()
        assert sessions
        assert all(ssl for _, ssl in sessions), sessions
        assert leader == [(True,)]
        probe = await connect(bridge_settings, "probe")
        try:
            cursor = await probe.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert await cursor.fetchone() == (True,)
        finally:
            await probe.close()

        # The instance really talks to Redis as the staging ACL user, and the whole deployment
        # stays inside its prefix.
        admin = redis.Redis.from_url(secure_redis.url, decode_responses=True)
        with contextlib.closing(admin):
            users = {client["user"] for client in admin.client_list()}
            keys = list(admin.scan_iter("*"))
        assert ACL_USER in users
        assert keys
        assert all(key.startswith(PREFIX) for key in keys), keys
    finally:
        await cache.stop()
        bridge.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)


# --------------------------------------------------------------------------------------------
# No secret in any output of real processes
# --------------------------------------------------------------------------------------------


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _post(url: str, token: str | None) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, data=b"", method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _status(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_argv("status", *args), env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow
def test_no_secret_in_logs_errors_ready_metrics_or_status(
    tls_postgres: TlsPostgres, tls_db: str, secure_redis: LocalRedis
) -> None:
    settings = make_settings(
        tls_postgres.app_url(tls_db), redis_url(secure_redis), key_prefix=PREFIX
    )
    env = {
        **FAST_ENV,
        "VOCABSYNC_LEADER_POLL_INTERVAL": "0.5",
        "VOCABSYNC_KEY_PREFIX": PREFIX,
        "VOCABSYNC_REFRESH_TOKEN": REFRESH_TOKEN,
        "VOCABSYNC_LOG_LEVEL": "DEBUG",
    }
    outputs: list[tuple[str, str]] = []
    with DemoStack(settings, extra_env=env) as stack:
        try:
            _exercise_stack(stack, tls_postgres, tls_db, secure_redis, outputs)
        finally:
            for process in [*stack.instances, *([stack.bridge] if stack.bridge else [])]:
                process.terminate()
            for log in sorted(stack.log_dir.glob("*.log")):
                outputs.append((f"log {log.name}", log.read_text(errors="replace")))
    everything = "\n".join(text for _, text in outputs)
    # The logs do name the servers, with the passwords masked: not just silence.
    assert f"{APP_ROLE}:***@127.0.0.1" in everything
    assert ":***@127.0.0.1" in everything
    for where, text in outputs:
        assert_no_secret(text, where)


def _exercise_stack(
    stack: DemoStack,
    tls_postgres: TlsPostgres,
    tls_db: str,
    secure_redis: LocalRedis,
    outputs: list[tuple[str, str]],
) -> None:
    stack.execute("""INSERT INTO "Project"(project_name) VALUES ('Secret-free')""")
    stack.wait_everywhere(lambda v: "Secret-free" in v.get("projects", ()), timeout=15)

    for index, url in enumerate(stack.instance_urls):
        for path in ("/ready", "/metrics", "/api/vocabulary"):
            code, body = _get(url + path)
            assert code == 200, (path, body)
            outputs.append((f"instance {index} {path}", body))
        code, body = _post(f"{url}/api/vocabulary/refresh", "not-the-token")
        assert code == 401
        outputs.append(("refresh with a wrong token", body))
        code, body = _post(f"{url}/api/vocabulary/refresh", REFRESH_TOKEN)
        assert code == 200
        outputs.append(("refresh", body))

    child_env = stack.child_env()
    for args in ((), ("--json",)):
        result = _status(child_env, *args)
        assert result.returncode == 0, result.stdout + result.stderr
        outputs.append((f"status {args}", result.stdout + result.stderr))

    # Wrong passwords: a bridge that cannot log in to PostgreSQL, an instance that cannot log in
    # to Redis. Both say why, and neither says the password.
    wrong_db = {**child_env, "DATABASE_URL": tls_postgres.app_url(tls_db, WRONG_PG_PASSWORD)}
    wrong_redis = {**child_env, "REDIS_URL": redis_url(secure_redis, "", WRONG_REDIS_PASSWORD)}
    locked_out = [
        ManagedProcess("bridge-wrong-password", cli_argv("bridge"), wrong_db, stack.log_dir),
        ManagedProcess(
            "api-wrong-password",
            cli_argv("serve", "--host", "127.0.0.1", "--port", "0"),
            wrong_redis,
            stack.log_dir,
        ),
    ]
    for process in locked_out:
        process.start()
    try:
        wait_until(
            lambda: "password authentication failed" in locked_out[0].log_tail(200),
            timeout=20,
            message="the bridge reports the failed PostgreSQL login",
        )
        wait_until(
            lambda: (
                "WRONGPASS" in locked_out[1].log_tail(200)
                or "invalid username-password" in locked_out[1].log_tail(200)
            ),
            timeout=20,
            message="the instance reports the failed Redis login",
        )
        result = _status(wrong_db)
        assert result.returncode == 1
        outputs.append(("status with a wrong database password", result.stdout + result.stderr))
        result = _status(wrong_redis)
        assert result.returncode == 1
        outputs.append(("status with a wrong Redis password", result.stdout + result.stderr))
        for args in (("migrate", "--check"), ("migrate",)):
            result = subprocess.run(
                cli_argv(*args), env=wrong_db, capture_output=True, text=True, timeout=60
            )
            assert result.returncode == 1
            outputs.append((f"{args} with a wrong password", result.stdout + result.stderr))
    finally:
        for process in locked_out:
            process.terminate()

    # Redis goes away: every process logs the failure and /ready and status report it.
    secure_redis.kill()
    try:
        wait_until(
            lambda: all(
                http_json(f"{url}/ready")[1].get("redis") == "unavailable"
                for url in stack.instance_urls
            ),
            timeout=20,
            message="instances notice Redis is gone",
        )
        for index, url in enumerate(stack.instance_urls):
            outputs.append((f"instance {index} /ready without Redis", _get(url + "/ready")[1]))
        result = _status(child_env)
        assert result.returncode == 1
        outputs.append(("status without Redis", result.stdout + result.stderr))
    finally:
        secure_redis.restart()
    stack.execute("""INSERT INTO "Project"(project_name) VALUES ('After Redis')""")
    stack.wait_everywhere(lambda v: "After Redis" in v.get("projects", ()), timeout=20)


# --------------------------------------------------------------------------------------------
# Property-based API fuzzing with schemathesis
# --------------------------------------------------------------------------------------------

FUZZ_EXAMPLES = 40


def fuzz(app: Any, *, allow_server_errors: bool) -> dict[tuple[str, str], set[int]]:
    """Run schemathesis's own engine in-process, as ``st run --checks all`` does: every phase
    (schema examples, coverage of edge cases such as bodies that are not UTF-8 JSON, fuzzing,
    stateful) and every check (status code documented, body, headers and content type match
    the schema, invalid data rejected, unsupported methods refused, ... and unless allowed no
    5xx). Fails with every problem found; returns the status codes seen per method and path."""
    import schemathesis
    from schemathesis.engine import events, from_schema
    from schemathesis.python import asgi

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.checks.update(
        included_check_names=["all"],
        excluded_check_names=["not_a_server_error"] if allow_server_errors else None,
    )
    schema.config.generation.update(max_examples=FUZZ_EXAMPLES, deterministic=True, database="none")
    seen: dict[tuple[str, str], set[int]] = {}
    problems: list[str] = []
    try:
        with warnings.catch_warnings():
            # Hypothesis warns when it prints a big generated request (a long question): noise.
            warnings.filterwarnings("ignore", "Generating overly large repr", HypothesisWarning)
            for event in from_schema(schema).execute():
                if isinstance(event, events.ScenarioFinished):
                    _record(event, seen, problems)
                elif isinstance(event, events.NonFatalError):
                    problems.append(f"{event.label}: error: {event.info.format()}")
                elif isinstance(event, events.FatalError):
                    raise event.exception
    finally:
        asgi.shutdown_lifespans()  # stop the app's cache: it holds connections
    assert not problems, "\n".join(sorted(set(problems)))
    return seen


def _record(event: Any, seen: dict[tuple[str, str], set[int]], problems: list[str]) -> None:
    for interaction in event.recorder.interactions.values():
        if interaction.response is not None:
            key = (interaction.request.method.upper(), urlsplit(interaction.request.uri).path)
            seen.setdefault(key, set()).add(interaction.response.status_code)
    for case_id, nodes in event.recorder.checks.items():
        for node in nodes:
            if node.failure_info is None:
                continue
            case = event.recorder.cases[case_id].value
            failure = node.failure_info.failure
            body = case.body if isinstance(case.body, bytes | str) else repr(case.body)
            problems.append(
                f"{event.label}: {node.name}: {failure.title}: {failure.message} "
                f"(request body {body!r:.120})"
            )


def test_fuzzing_the_api_finds_no_server_errors_or_schema_violations(
    db_url: str, redis_url: str
) -> None:
    settings = make_settings(db_url, redis_url, refresh_token=REFRESH_TOKEN)
    seen = fuzz(create_app(settings), allow_server_errors=False)
    assert set(seen) >= {  # every operation of the schema is fuzzed, these at least
        ("GET", "/api/vocabulary"),
        ("POST", "/api/vocabulary/refresh"),
        ("GET", "/health"),
        ("GET", "/ready"),
        ("GET", "/metrics"),
    }
    assert seen[("GET", "/api/vocabulary")] == {200}
    assert 200 in seen[("POST", "/api/vocabulary/match")]
    assert seen[("POST", "/api/vocabulary/refresh")] == {401}, "generated tokens are refused"

    open_refresh = fuzz(create_app(make_settings(db_url, redis_url)), allow_server_errors=False)
    assert open_refresh[("POST", "/api/vocabulary/refresh")] == {200}

    closed_reads = make_settings(db_url, redis_url, read_token=READ_TOKEN)
    seen = fuzz(create_app(closed_reads), allow_server_errors=False)
    assert seen[("GET", "/api/vocabulary")] == {401}, "generated tokens are refused"
    assert 200 not in seen[("POST", "/api/vocabulary/match")]
    assert 401 in seen[("POST", "/api/vocabulary/match")]
    assert seen[("GET", "/health")] == {200}


def test_fuzzing_an_instance_without_backends_finds_only_documented_errors() -> None:
    """Nothing reachable: every 5xx the API answers is one its schema documents (the refresh's
    500, the vocabulary's and readiness's 503), with a body that matches it."""
    settings = make_settings("postgresql://postgres@127.0.0.1:1/none", "redis://127.0.0.1:1/0")
    seen = fuzz(create_app(settings), allow_server_errors=True)
    assert seen[("POST", "/api/vocabulary/refresh")] == {500}
    assert seen[("GET", "/api/vocabulary")] == {503}
    assert seen[("GET", "/ready")] == {503}
    assert seen[("GET", "/health")] == {200}
