"""What the vocabulary triggers cost the application's writes: pgbench with and without them.

Starts its own private PostgreSQL, durable the way production is (fsync, synchronous_commit and
full_page_writes on, as on Supabase; the test servers turn them off), with one database per
variant, each migrated with the real migrations and seeded with the same "Project" rows:

  none       no vocabulary triggers at all
  statement  the design document's triggers: every statement notifies (vocabsync statement mode)
  precise    vocabsync's default: UPDATEs notify only when a vocabulary column's text changed
  when_only  precise mode as installed on a table with BEFORE UPDATE row triggers: the UPDATE
             trigger without its UPDATE OF column list, so every UPDATE prepares its WHEN
  delta      delta mode: notifies like precise, with the touched values (transition tables for
             INSERT and DELETE, a row trigger buffering UPDATEs), plus its lookup indexes
  indexes    no triggers, but delta mode's lookup indexes: what the indexes alone cost

Then runs pgbench with custom scripts, interleaved in one run (every repetition visits every
workload x clients x variant cell, in rotating variant order, after a CHECKPOINT), and prints the
median throughput of each cell and its ratio to "none": the median of the ratios of each
repetition's back-to-back runs, which share whatever else the machine was doing at the time.

  insert  single-row INSERT INTO "Project" (a new project: a vocabulary change)
  update  single-row UPDATE of "Project".budget and updated_at (never a vocabulary change)
  rename  single-row UPDATE of "Project".location (a vocabulary change)

Then it measures, without pgbench, what throughput hides while the disk is the bottleneck: the
server time of single-row statements in a PL/pgSQL loop, each committed (without waiting for
the WAL flush), which is the triggers' CPU cost (the backend's CPU time, from /proc, which the
machine's other work disturbs less than elapsed time). Finally it times one UPDATE that renames many
rows and one INSERT of many rows, each one statement, and counts the notifications they send:
precise mode's trigger fires per changed row, and PostgreSQL folds the identical notifications
of a transaction into one; delta mode sends one per statement.

    .venv/bin/python bench/write_path.py                      # about 5 minutes
    .venv/bin/python bench/write_path.py --duration 1 --reps 1 --clients 1,16   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from vocabsync.config import Settings
from vocabsync.db.migrate import migrate
from vocabsync.db.triggers import DEFAULT_CHANNEL, render_rollback_sql, render_trigger_sql
from vocabsync.local.servers import LocalPostgres, find_system_postgres_bin_dir

VARIANTS = ("none", "statement", "precise", "when_only", "delta", "indexes")
WORKLOADS = ("insert", "update", "rename")
DURABLE = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "shared_buffers": "256MB",
    "max_wal_size": "4GB",  # no checkpoint in the middle of a run
    "checkpoint_timeout": "1h",
    "max_connections": "100",
}
"""Production's durability (PostgreSQL's defaults, and Supabase's); LocalPostgres's own defaults
turn fsync off for tests, which would hide the cost: the notify lock is held through the WAL
flush."""

SCRIPTS = {
    "insert": (
        "INSERT INTO \"Project\" (project_name, location) VALUES ('Bench project ' || :client_id,"
        " 'Bench site');\n"
    ),
    "update": (
        "\\set id random(1, {rows})\n"
        'UPDATE "Project" SET budget = budget + 1, updated_at = now() WHERE id = :id;\n'
    ),
    "rename": (
        "\\set id random(1, {rows})\n"
        "\\set n random(1, 1000000)\n"
        "UPDATE \"Project\" SET location = 'Renamed site ' || :n WHERE id = :id;\n"
    ),
}
TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=2, help="seconds per pgbench run")
    parser.add_argument("--reps", type=int, default=5, help="repetitions of every cell")
    parser.add_argument("--clients", default="1,4,16", help="client counts, comma-separated")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"of {', '.join(VARIANTS)}; 'none' is always measured",
    )
    parser.add_argument("--rows", type=int, default=10_000, help='"Project" rows to update')
    parser.add_argument("--bulk-rows", type=int, default=5_000, help="rows renamed in one UPDATE")
    parser.add_argument("--bulk-reps", type=int, default=7)
    return parser.parse_args(argv)


def pgbench_binary(server: LocalPostgres) -> Path:
    """pgbench beside the server's binaries, else the system's (the pip server has none)."""
    candidates = [server.bin_dir, find_system_postgres_bin_dir()]
    for directory in candidates:
        if directory is not None and (directory / "pgbench").is_file():
            return directory / "pgbench"
    found = shutil.which("pgbench")
    if found is None:
        raise SystemExit("pgbench not found: install postgresql-client (it ships pgbench)")
    return Path(found)


def prepare(server: LocalPostgres, variant: str, rows: int) -> str:
    """A database for ``variant``: the real migrations, then the seed rows."""
    name = f"bench_{variant}"
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = server.url_for(name)
    mode = variant if variant in ("statement", "delta") else "precise"
    if variant == "indexes":
        mode = "delta"
    settings = Settings(database_url=url, trigger_mode=mode, _env_file=None)
    asyncio.run(migrate(settings))
    with psycopg.connect(url, autocommit=True) as conn:
        if variant in ("none", "indexes"):  # migrate + rollback: no triggers (none: no indexes)
            conn.execute(render_rollback_sql(settings.sources).encode())
        if variant == "when_only":  # what migrate renders for a table with BEFORE triggers
            sql_text = render_trigger_sql(
                settings.sources, DEFAULT_CHANNEL, mode="precise", before_update_tables={"Project"}
            )
            conn.execute(sql_text.encode())
        conn.execute(
            'INSERT INTO "Project" (project_name, location, budget)'
            " SELECT 'Project ' || g, 'Site ' || (g %% 50), g FROM generate_series(1, %s) g",
            (rows,),
        )
        conn.execute('VACUUM ANALYZE "Project"')
    return url


def run_pgbench(
    pgbench: Path, server: LocalPostgres, dbname: str, script: Path, clients: int, seconds: int
) -> float:
    """One pgbench run; its throughput (transactions per second, excluding connecting)."""
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # every run starts from the same WAL state
    cmd = [
        str(pgbench),
        "-n",  # no vacuum of pgbench's own tables (there are none)
        "-M",
        "prepared",
        "-c",
        str(clients),
        "-j",
        str(min(clients, os.cpu_count() or 1)),
        "-T",
        str(seconds),
        "-f",
        str(script),
        "-h",
        "127.0.0.1",
        "-p",
        str(server.port),
        "-U",
        "postgres",
        dbname,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, check=False)
    found = TPS.search(result.stdout)
    if result.returncode != 0 or found is None:
        raise SystemExit(f"pgbench failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return float(found.group(1))


def rotated(items: Sequence[str], by: int) -> list[str]:
    """``items`` starting at position ``by``: no variant always runs first (or last)."""
    by %= len(items)
    return [*items[by:], *items[:by]]


def throughput(
    server: LocalPostgres, args: argparse.Namespace, workdir: Path
) -> dict[tuple[str, int, str], list[float]]:
    """tps samples per (workload, clients, variant), interleaved over the repetitions."""
    pgbench = pgbench_binary(server)
    scripts: dict[str, Path] = {}
    for workload in args.workload_list:
        path = workdir / f"{workload}.sql"
        path.write_text(SCRIPTS[workload].replace("{rows}", str(args.rows)))
        scripts[workload] = path
    samples: dict[tuple[str, int, str], list[float]] = {}
    cell = 0
    for rep in range(args.reps):
        for workload in args.workload_list:
            for clients in args.client_list:
                for variant in rotated(args.variant_list, cell):
                    tps = run_pgbench(
                        pgbench, server, f"bench_{variant}", scripts[workload], clients,
                        args.duration,
                    )  # fmt: skip
                    samples.setdefault((workload, clients, variant), []).append(tps)
                    print(
                        f"  rep {rep + 1}/{args.reps} {workload:6} {clients:2} clients "
                        f"{variant:9} {tps:9.0f} tps",
                        file=sys.stderr,
                        flush=True,
                    )
                cell += 1
    return samples


@contextlib.contextmanager
def listening(url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(DEFAULT_CHANNEL)))
        yield conn


def notifications_after(listener: psycopg.Connection[Any], writer: psycopg.Connection[Any]) -> int:
    """Notifications committed before now: everything before our own sentinel (commit order)."""
    writer.execute("SELECT pg_notify(%s, 'sentinel')", (DEFAULT_CHANNEL,))
    for count, notify in enumerate(listener.notifies(timeout=10)):
        if notify.payload == "sentinel":
            return count
    raise SystemExit("the sentinel notification did not arrive within 10 s")


LOOP = """
DO $$
BEGIN
    FOR i IN 1..{n} LOOP
        {statement};
        COMMIT;
    END LOOP;
END
$$"""
LOOPED = {
    "update": 'UPDATE "Project" SET budget = budget + 1, updated_at = now()'
    " WHERE id = 1 + (i * 7919) % {rows}",
    "insert": "INSERT INTO \"Project\" (project_name, location) VALUES ('Loop ' || i, 'Loop site')",
    "rename": "UPDATE \"Project\" SET location = 'Loop site ' || i"
    " WHERE id = 1 + (i * 7919) % {rows}",
}
"""What each workload's statement does in the server-time loop."""


def backend_cpu_ns(pid: int) -> int | None:
    """Nanoseconds process ``pid`` has spent on a CPU (Linux ``/proc/<pid>/schedstat``), or None
    where that cannot be read."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def server_cost(
    server: LocalPostgres,
    variants: Sequence[str],
    workloads: Sequence[str],
    rows: int,
    reps: int,
    n: int = 3_000,
) -> tuple[dict[tuple[str, str], list[float]], bool]:
    """Per workload and variant: server time (µs) per single-row statement and its commit, from a
    PL/pgSQL loop of ``n`` (no round trips; commits do not wait for the WAL flush): the
    triggers' CPU cost alone, which the pgbench runs show only when the CPU is the
    bottleneck. It is the backend's CPU time where /proc tells it (True), which other work on
    the machine disturbs far less than the elapsed time it falls back to (False)."""
    results: dict[tuple[str, str], list[float]] = {}
    cpu = True
    for rep in range(reps):
        for workload in workloads:
            statement = LOOPED[workload].replace("{rows}", str(rows))
            loop = LOOP.replace("{n}", str(n)).replace("{statement}", statement)
            for variant in rotated(variants, rep):
                url = server.url_for(f"bench_{variant}")
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("SET synchronous_commit = off")
                    row = conn.execute("SELECT pg_backend_pid()").fetchone()
                    pid = row[0] if row else 0
                    before = backend_cpu_ns(pid)
                    started = time.perf_counter()
                    conn.execute(loop)
                    elapsed = time.perf_counter() - started
                    after = backend_cpu_ns(pid)
                if before is not None and after is not None:
                    elapsed = (after - before) / 1e9
                else:
                    cpu = False
                results.setdefault((workload, variant), []).append(elapsed / n * 1e6)
    return results, cpu


BULK = {
    "rename": 'UPDATE "Project" SET location = %s WHERE id <= %s',
    "insert": 'INSERT INTO "Project" (project_name, location)'
    " SELECT %s || g, 'Bulk site ' || (g %% 50) FROM generate_series(1, %s) g",
}
"""One statement touching many rows: a rename of the location of the first ``rows`` rows (50
distinct old values, one new), an insert of ``rows`` new projects (too many names to list)."""


def bulk(
    server: LocalPostgres, variants: Sequence[str], rows: int, reps: int
) -> dict[tuple[str, str], tuple[list[float], set[int]]]:
    """Per bulk statement and variant: times (ms) and the notifications each run sent."""
    results: dict[tuple[str, str], tuple[list[float], set[int]]] = {}
    for rep in range(reps):
        for kind, statement in BULK.items():
            for variant in rotated(variants, rep):
                url = server.url_for(f"bench_{variant}")
                with listening(url) as listener, psycopg.connect(url, autocommit=True) as writer:
                    started = time.perf_counter()
                    writer.execute(statement, (f"Bulk {kind} {rep} ", rows))
                    elapsed = (time.perf_counter() - started) * 1000
                    sent = notifications_after(listener, writer)
                times, counts = results.setdefault((kind, variant), ([], set()))
                times.append(elapsed)
                counts.add(sent)
    return results


NAMES = {
    "none": "no trigger",
    "statement": "statement mode",
    "precise": "precise mode",
    "when_only": "precise, no UPDATE OF",
    "delta": "delta mode",
    "indexes": "delta's indexes, no trigger",
}
LABELS = {
    "insert": 'single-row INSERT into "Project"',
    "update": 'UPDATE of "Project".budget (not vocabulary)',
    "rename": 'UPDATE of "Project".location (vocabulary)',
}


def print_report(
    args: argparse.Namespace,
    server: LocalPostgres,
    samples: dict[tuple[str, int, str], list[float]],
    cost: dict[tuple[str, str], list[float]],
    cpu: bool,
    bulk: dict[tuple[str, str], tuple[list[float], set[int]]],
    seconds: float,
) -> None:
    with psycopg.connect(server.url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    version = row[0] if row else "?"
    print(
        f"PostgreSQL {version}, {os.cpu_count()} CPUs; fsync, synchronous_commit, "
        f"full_page_writes on; pgbench -M prepared, {args.duration} s per run, median of "
        f'{args.reps}, interleaved; {args.rows:,} "Project" rows\n'
    )
    others = [v for v in args.variant_list if v != "none"]
    header = " | ".join(NAMES.get(v, v) for v in others)
    print(f"| workload | clients | no trigger (tps) | {header} |")
    print("| --- | ---: | ---: |" + " ---: |" * len(others))
    for workload in args.workload_list:
        for clients in args.client_list:
            none = samples[(workload, clients, "none")]
            base = statistics.median(none)
            cells = []
            for variant in others:
                runs = samples[(workload, clients, variant)]
                ratio = statistics.median(v / n for v, n in zip(runs, none, strict=True))
                cells.append(f"{statistics.median(runs):,.0f} ({ratio:.2f}x)")
            print(f"| {LABELS[workload]} | {clients} | {base:,.0f} | {' | '.join(cells)} |")
    measure = "the backend's CPU time" if cpu else "elapsed time"
    print(
        "\nServer time per single-row statement and its commit (not waiting for the WAL flush), "
        f"µs, in a PL/pgSQL loop of 3,000 ({measure}, median of {args.bulk_reps}):\n"
    )
    header = " | ".join(NAMES.get(v, v) for v in args.variant_list)
    print(f"| statement | {header} |")
    print("| --- |" + " ---: |" * len(args.variant_list))
    for workload in args.workload_list:
        cells = [f"{statistics.median(cost[(workload, v)]):.1f}" for v in args.variant_list]
        print(f"| {LABELS[workload]} | {' | '.join(cells)} |")
    print(
        f"\nOne statement touching {args.bulk_rows:,} rows (median of {args.bulk_reps}): time in "
        "ms, and notifications sent:\n"
    )
    print(f"| statement | {header} |")
    print("| --- |" + " ---: |" * len(args.variant_list))
    kinds = {"rename": "UPDATE of the location (50 old values, 1 new)", "insert": "INSERT"}
    for kind, label in kinds.items():
        cells = []
        for variant in args.variant_list:
            times, counts = bulk[(kind, variant)]
            sent = ", ".join(str(n) for n in sorted(counts))
            cells.append(f"{statistics.median(times):.1f} ({sent})")
        print(f"| {label} | {' | '.join(cells)} |")
    print(f"\ntotal time {seconds / 60:.1f} min")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.client_list = [int(c) for c in args.clients.split(",") if c.strip()]
    args.workload_list = [w for w in args.workloads.split(",") if w.strip()]
    requested = [v for v in args.variants.split(",") if v.strip()]
    args.variant_list = ["none", *(v for v in requested if v != "none")]
    unknown = set(args.workload_list) - set(WORKLOADS)
    unknown |= set(args.variant_list) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown workloads or variants: {sorted(unknown)} (see --help)")
    began = time.monotonic()
    with LocalPostgres(extra_conf=DURABLE) as server, tempfile.TemporaryDirectory() as tmp:
        server.start()
        for variant in args.variant_list:
            prepare(server, variant, args.rows)
        samples = throughput(server, args, Path(tmp))
        cost, cpu = server_cost(
            server, args.variant_list, args.workload_list, args.rows, args.bulk_reps
        )
        touched = bulk(server, args.variant_list, args.bulk_rows, args.bulk_reps)
        print_report(args, server, samples, cost, cpu, touched, time.monotonic() - began)
    return 0


if __name__ == "__main__":
    sys.exit(main())
