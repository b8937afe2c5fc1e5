"""A streaming standby of a :class:`~vocabsync.local.servers.LocalPostgres`, for failover tests.

Not runtime code (like the rest of :mod:`vocabsync.local`). The standby is made with
``pg_basebackup -R`` (a physical copy that streams the primary's WAL) and started the same way as
the primary, as an unprivileged user when we are root. Promotion and detaching use SQL
(``pg_promote()``, ``ALTER SYSTEM``), never ``pg_ctl``, which some machines wrap.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import psycopg

from vocabsync.local.servers import LocalPostgres, LocalServerError

PROMOTE_WAIT_SECONDS: Final = 60
"""How long ``pg_promote(true, ...)`` may wait for the end of recovery."""


def in_recovery(server: LocalPostgres) -> bool:
    """True while ``server`` is a standby (replaying WAL, read-only)."""
    with psycopg.connect(server.url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    return bool(row and row[0])


def wal_position(server: LocalPostgres) -> str:
    """The primary's WAL insert position (everything committed so far is before it)."""
    with psycopg.connect(server.url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    assert row is not None
    return str(row[0])


class StandbyPostgres(LocalPostgres):
    """A streaming standby of ``primary``, made with pg_basebackup instead of initdb."""

    def __init__(
        self,
        primary: LocalPostgres,
        *,
        port: int | None = None,
        extra_conf: Mapping[str, str] | None = None,
    ) -> None:
        """``port``: a fixed one (the soak puts a new standby where the old primary listened,
        so the addresses in every DATABASE_URL stay right); ``extra_conf`` as for the primary
        (the standby becomes one on promotion)."""
        super().__init__(flavor=primary.flavor, port=port, extra_conf=extra_conf)
        self.primary = primary

    @property
    def available(self) -> bool:
        """False when ``pg_basebackup`` is not beside the server binaries (some embedded builds)."""
        return (self.bin_dir / "pg_basebackup").is_file()

    def _prepare(self, base: Path) -> None:
        user = self._popen_user()
        cmd = [
            str(self.bin_dir / "pg_basebackup"),
            *("-D", str(base / "data"), "-R", "-X", "stream", "-c", "fast"),
            *("-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres"),
        ]
        try:
            if user is None:
                subprocess.run(cmd, cwd=base, capture_output=True, timeout=120, check=True)
            else:
                subprocess.run(
                    cmd,
                    cwd=base,
                    capture_output=True,
                    timeout=120,
                    check=True,
                    user=user.pw_uid,
                    group=user.pw_gid,
                    extra_groups=[],
                )
        except subprocess.CalledProcessError as exc:
            output = (exc.stderr or b"").decode(errors="replace")[-2000:]
            raise LocalServerError(
                f"pg_basebackup failed with code {exc.returncode}: {output}"
            ) from exc
        except (OSError, subprocess.SubprocessError) as exc:
            raise LocalServerError(f"pg_basebackup ({cmd[0]}) could not run: {exc}") from exc

    def replayed_up_to(self, lsn: str) -> bool:
        """True once this standby has replayed the primary's WAL up to ``lsn``."""
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()
        return bool(row and row[0])

    def streaming(self) -> bool:
        """True while a WAL receiver is connected to the primary."""
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'"
            ).fetchone()
        return bool(row and row[0])

    def detach(self) -> None:
        """Stop receiving WAL (keep what was replayed): the standby falls behind from now on.

        ``primary_conninfo`` comes from ``postgresql.auto.conf`` (``pg_basebackup -R``), so
        ``ALTER SYSTEM`` and a reload change it; the WAL receiver stops at once.
        """
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            conn.execute("ALTER SYSTEM SET primary_conninfo = ''")
            conn.execute("SELECT pg_reload_conf()")

    def promote(self) -> float:
        """Promote this standby to a primary (a new timeline); returns the seconds it took."""
        began = time.monotonic()
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SELECT pg_promote(true, %s)", (PROMOTE_WAIT_SECONDS,)).fetchone()
        if not (row and row[0]):
            raise LocalServerError(f"the standby was not promoted within {PROMOTE_WAIT_SECONDS}s")
        return time.monotonic() - began
