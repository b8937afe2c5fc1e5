"""The database's identity and raw snapshot state, which every load and probe returns.

Versions from ``pg_current_snapshot()`` order states of one database history only. The identity
(``public.vocabsync_database_identity()``: system identifier, timeline, database OID, the
function's own OID and its generation comment) changes when the history does, so a consumer can
replace its state instead of merging: another database or cluster, a copy, a promoted standby.
The raw count of transactions in progress is returned uncapped (the packed version caps it).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tests.test_migrations import make_settings
from tests.waiting import wait_until
from vocabsync.config import Settings
from vocabsync.db.migrate import migrate
from vocabsync.local.replication import StandbyPostgres, in_recovery
from vocabsync.local.servers import LocalPostgres, resolve_flavor
from vocabsync.services.change_probe import probe
from vocabsync.services.vocabulary_loader import DatabaseState, VocabularyLoader
from vocabsync.vocabulary import version_from_snapshot

IDENTITY_PARTS = ("system identifier", "timeline", "database", "function", "generation")


async def state_of(settings: Settings) -> DatabaseState:
    async with VocabularyLoader(settings) as loader:
        conn = await psycopg.AsyncConnection.connect(settings.postgres_conninfo, autocommit=True)
        try:
            return (await loader.load_state_on(conn)).state
        finally:
            await conn.close()


def parts(identity: str) -> dict[str, str]:
    values = identity.split("/", len(IDENTITY_PARTS) - 1)
    assert len(values) == len(IDENTITY_PARTS), identity
    return dict(zip(IDENTITY_PARTS, values, strict=True))


def dbname(url: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])


async def migrated(url: str) -> Settings:
    settings = make_settings(url)
    await migrate(settings)
    return settings


async def test_identity_is_stable_and_a_copied_database_has_another(
    pg_server: LocalPostgres, pg_url: str
) -> None:
    settings = await migrated(pg_url)
    first = await state_of(settings)
    found = parts(first.identity)
    assert found["system identifier"].isdigit()
    assert found["timeline"] == "1"
    assert found["generation"].startswith("vocabsync generation ")
    again = await state_of(settings)
    assert again.identity == first.identity
    assert again.version >= first.version

    copy = f"copy_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(copy), sql.Identifier(dbname(pg_url))
            )
        )
    try:
        copied = parts((await state_of(make_settings(pg_server.url_for(copy)))).identity)
    finally:
        with psycopg.connect(pg_server.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(copy)))
    assert copied["database"] != found["database"]
    assert {k: v for k, v in copied.items() if k != "database"} == {
        k: v for k, v in found.items() if k != "database"
    }

    # Re-created (a restored dump does that): a new function OID and a new generation.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP FUNCTION public.vocabsync_database_identity()")
    settings = await migrated(pg_url)
    renewed = parts((await state_of(settings)).identity)
    assert renewed["function"] != found["function"]
    assert renewed["generation"] != found["generation"]


@pytest.fixture
def app_role(pg_url: str) -> Iterator[str]:
    """A login role that is not a superuser, with only the privileges the loader needs (as
    Supabase's roles are); its URL."""
    role = f"app_{uuid.uuid4().hex[:8]}"
    asyncio.run(migrated(pg_url))
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(sql.Identifier(role)))
        admin.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(
                sql.Identifier(role)
            )
        )
    try:
        info = psycopg.conninfo.conninfo_to_dict(pg_url)
        info["user"] = role
        yield psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]
    finally:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


async def test_an_unprivileged_role_reads_the_identity(pg_url: str, app_role: str) -> None:
    """pg_control_system() and pg_walfile_name() are executable by every role on PostgreSQL
    15; where a provider revokes them, the identity goes without that part instead of failing
    the load."""
    admin = await state_of(make_settings(pg_url))
    app = make_settings(app_role)
    assert (await state_of(app)).identity == admin.identity
    async with await psycopg.AsyncConnection.connect(app.postgres_conninfo) as conn:
        result = await probe(conn, app, {"projects": ["x"]}, ["expense_files"])
    assert result.identity == admin.identity

    with psycopg.connect(pg_url, autocommit=True) as conn:  # in this database only
        conn.execute("REVOKE EXECUTE ON FUNCTION pg_catalog.pg_control_system() FROM PUBLIC")
        conn.execute("REVOKE EXECUTE ON FUNCTION pg_catalog.pg_walfile_name(pg_lsn) FROM PUBLIC")
    limited = parts((await state_of(app)).identity)
    assert limited["system identifier"] == limited["timeline"] == ""
    assert {k: v for k, v in limited.items() if v} == {
        k: v for k, v in parts(admin.identity).items() if k not in ("system identifier", "timeline")
    }


# --- Other clusters: a second server, a standby ------------------------------------------------


def start_server(**conf: str) -> LocalPostgres:
    server = LocalPostgres(flavor=resolve_flavor(), extra_conf=conf)
    server.start()
    return server


def new_database(server: LocalPostgres) -> str:
    name = f"db_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server.url_for(name)


@pytest.mark.slow
async def test_another_cluster_has_another_identity(pg_url: str) -> None:
    here = parts((await state_of(await migrated(pg_url))).identity)
    other_server = start_server()
    try:
        there = parts((await state_of(await migrated(new_database(other_server)))).identity)
    finally:
        other_server.cleanup()
    assert there["system identifier"] != here["system identifier"]
    assert there["generation"] != here["generation"]


@pytest.mark.slow
async def test_a_promoted_standby_has_a_new_identity() -> None:
    """A standby reads the primary's history: same identity. Promoted, it starts a timeline of
    its own, which the identity shows at once (the standby that was behind may have missed
    commits, so its versions must not be merged with the old primary's)."""
    primary = start_server()
    standby: StandbyPostgres | None = None
    try:
        standby = StandbyPostgres(primary)
        if not standby.available:
            pytest.skip("pg_basebackup is not beside these server binaries")
        url = new_database(primary)
        settings = await migrated(url)
        before = await state_of(settings)
        standby.start()
        on_standby = make_settings(standby.url_for(dbname(url)))
        assert in_recovery(standby)
        assert (await state_of(on_standby)).identity == before.identity

        standby.promote()
        wait_until(lambda: not in_recovery(standby), message="standby promoted")
        promoted = parts((await state_of(on_standby)).identity)
        assert promoted["timeline"] == "2"
        assert promoted != parts(before.identity)
        assert {k: v for k, v in promoted.items() if k != "timeline"} == {
            k: v for k, v in parts(before.identity).items() if k != "timeline"
        }
        assert parts((await state_of(settings)).identity)["timeline"] == "1"  # the old primary
    finally:
        if standby is not None:
            standby.cleanup()
        primary.cleanup()


@pytest.mark.slow
async def test_more_than_999_transactions_in_progress_are_counted_raw() -> None:
    """1,001 prepared transactions stay in progress: the state carries the raw count, so two
    states that differ only in one of them finishing are told apart, by the raw values and by
    the packed version."""
    server = start_server(max_prepared_transactions="1100")
    try:
        url = new_database(server)
        settings = await migrated(url)
        with psycopg.connect(url, autocommit=True) as conn:
            for n in range(1001):
                conn.execute("BEGIN")
                conn.execute("SELECT pg_current_xact_id()")  # an xid: in every snapshot's xip
                conn.execute(sql.SQL("PREPARE TRANSACTION {}").format(sql.Literal(f"vs_{n}")))
            # A later transaction completes, so the snapshot's xmax passes them all and lists
            # them as in progress (xids at or above xmax are not listed).
            conn.execute("SELECT pg_current_xact_id()")
        many = await state_of(settings)
        assert many.in_progress >= 1001
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("COMMIT PREPARED 'vs_0'")
        fewer = await state_of(settings)
        assert fewer.in_progress == many.in_progress - 1
        assert (fewer.xmax, fewer.in_progress) != (many.xmax, many.in_progress)
        # The packed version keeps the whole count too (an earlier packing capped it at 999 and
        # gave these two states one version): the later state has the larger version.
        assert fewer.version > many.version
        assert fewer.version == version_from_snapshot(fewer.xmax, fewer.in_progress)
        async with await psycopg.AsyncConnection.connect(settings.postgres_conninfo) as conn:
            result = await probe(conn, settings, {}, [])
        assert result.in_progress == fewer.in_progress
    finally:
        server.cleanup()
