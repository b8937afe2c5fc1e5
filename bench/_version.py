"""The vocabulary version of the database right now, in the format instances report in /ready.

The one place that knows the version format (the sync protocol may change it): the benchmark
reads the database's version right after a commit and waits until an instance's /ready
``version`` reaches it; the naive baseline (bench/naive/instance.py) reports its loads in the
same format, so the same waiting code times both.

Format today (vocabsync.vocabulary.version_from_snapshot): a PostgreSQL snapshot packed as
``(xmax << 20) | (2**20 - 1 - in_progress)`` (exact: PostgreSQL never has 2**20 transactions in
progress). A snapshot taken after the commit returned is
at least as new as any snapshot that can include the commit, so the version read here is a
lower bound of the version of every load that sees it, and every load that sees the commit
reports a version at least this large.

No vocabsync import here: the naive baseline must not depend on the code it is compared with.
"""

from __future__ import annotations

from typing import Any

SNAPSHOT_COLUMNS = "pg_snapshot_xmax(s)::text::bigint, (SELECT count(*) FROM pg_snapshot_xip(s))"
"""SELECT list that reads (xmax, transactions in progress) of ``pg_current_snapshot() AS s``."""

_IN_PROGRESS_BITS = 20
_LIMIT = (1 << _IN_PROGRESS_BITS) - 1


def pack(xmax: int, in_progress: int) -> int:
    """A database snapshot as one integer that orders database states in time."""
    return (xmax << _IN_PROGRESS_BITS) | (_LIMIT - min(in_progress, _LIMIT))


def database_version(conn: Any) -> int:
    """The version of the state ``conn`` sees now (a psycopg connection in autocommit mode)."""
    row = conn.execute(f"SELECT {SNAPSHOT_COLUMNS} FROM pg_current_snapshot() AS s").fetchone()
    return pack(int(row[0]), int(row[1]))


def reached(reported: int | None, target: int) -> bool:
    """True when an instance reporting ``reported`` holds the state of version ``target``."""
    return reported is not None and reported >= target
