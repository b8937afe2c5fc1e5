"""How vocabulary sync scales: 10k, 200k and 1M terms, against the design document's naive pipeline.

For each size it builds the vocabulary in a private PostgreSQL with plain SQL (size / 2 multi-word
project names + size / 2 file names + 2,000 categories), starts the real stack (``vocabsync
migrate``, one ``vocabsync bridge``, two ``vocabsync serve`` on a private Redis) and measures:

- commit -> served (both instances' ``/ready`` version reaches the database's version read right
  after the commit) and commit -> matchable (both find the term through
  ``POST /api/vocabulary/match``), p50 / p99, over single-row changes committed one at a time
  (insert, rename, delete, on all five tables);
- per change, with nobody polling the instances: bytes Redis sends (INFO total_net_output_bytes,
  less this script's own traffic), CPU of each process (``/proc``: utime + stime of the process and
  its children); the next change is committed once the bridge has published (seen on a Redis
  subscription) and the processes are idle again; the idle rate, measured before, is subtracted;
- resident memory of each instance, matching on;
- instance start -> ready and -> matchable (a second instance joining the running deployment);
- one statement inserting 100k projects -> served and -> matchable everywhere;
- at the largest size, a sustained load (100 changes/s for 30 s) and its lag p50 / p99.

Then the same on the same data, servers and triggers with the design document's naive pipeline
(bench/naive/: a bridge that forwards NOTIFY to Pub/Sub, instances that reload all six lists on
every message), and the ratio naive / vocabsync for every figure. Progress goes to stderr, the
tables (markdown) to stdout.

    .venv/bin/python bench/scale.py [--sizes 10k,200k,1m] [--changes 100] [--skip-naive]
                                    [--skip-sustained] [--skip-bulk]

It talks to the processes only through their command line, HTTP, PostgreSQL and Redis; the
version format it compares lives in bench/_version.py, the vocabsync imports in bench/_stack.py.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _data
from _counters import CountingRedis, CpuWatch, MessageCounter, tree_memory
from _probe import Backoff, Http, matches, readiness
from _stack import ManagedProcess, Servers, cli_argv, find_free_port
from _version import database_version, reached

BENCH = Path(__file__).resolve().parent
BULK_ROWS = 100_000
INSTANCES = 2
APP_PROCESSES = ("bridge", "api-1", "api-2")
STARTED = time.perf_counter()
QUIET_WINDOW_S = 0.15
QUIET_ALLOWANCE_S = 0.003
"""Between two changes of the cost phase: the processes used at most 3 ms CPU in 150 ms (event
loop timers, PostgreSQL's background writers), so the next change does not coalesce with it."""

Check = tuple[str, str, bool]  # (field, term, should be found)


def log(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:7.1f} s] {message}", file=sys.stderr, flush=True)


# --- the two systems -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class System:
    name: str
    tag: str  # goes into the names of the terms it changes
    bridge_argv: Callable[[], list[str]]
    instance_argv: Callable[[int], list[str]]


VOCABSYNC = System(
    "vocabsync",
    "Vs",
    lambda: cli_argv("bridge"),
    lambda port: cli_argv("serve", "--host", "127.0.0.1", "--port", str(port)),
)
NAIVE = System(
    "naive",
    "Nv",
    lambda: [sys.executable, str(BENCH / "naive" / "bridge.py")],
    lambda port: [sys.executable, str(BENCH / "naive" / "instance.py"), "--port", str(port)],
)


@dataclass(slots=True)
class Instance:
    process: ManagedProcess
    http: Http


# --- changes ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    column: str
    field: str


PROJECT = Table("Project", "project_name", "projects")
CHANGE_TABLES = (
    PROJECT,
    Table("Expenses", "file_name", "expense_files"),
    Table("CashFlow", "file_name", "cashflow_files"),
    PROJECT,
    Table("ExpensesColumn", "column_name", "expense_categories"),
    Table("CashFlowColumn", "column_name", "cashflow_categories"),
)


def term_names(table: Table, tag: str, k: int) -> tuple[str, str]:
    """A new term and what it is renamed to, unlike any generated one."""
    if table.field == "projects":
        return f"Scalebench {tag} Quarry {k}", f"Scalebench {tag} Quarry {k} Annex"
    if table.field.endswith("_files"):
        return f"Scalebench_{tag}_{k:05d}.xlsx", f"Scalebench_{tag}_{k:05d}_v2.xlsx"
    return f"Scalebench {tag} Cost {k}", f"Scalebench {tag} Cost {k} Revised"


class ChangePlan:
    """Single-row changes: insert a term, rename it, delete it; the next term in the next table."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.index = 0
        self._row_id = 0
        self.last_checks: list[Check] = []

    def apply(self, conn: Any) -> tuple[float, list[Check]]:
        """Commit the next change; returns when the commit returned, and what must follow."""
        committed, self.last_checks = self._apply(conn)
        return committed, self.last_checks

    def _apply(self, conn: Any) -> tuple[float, list[Check]]:
        k, step = divmod(self.index, 3)
        self.index += 1
        table = CHANGE_TABLES[k % len(CHANGE_TABLES)]
        first, renamed = term_names(table, self.tag, k)
        if step == 0:
            row = conn.execute(
                f'INSERT INTO "{table.name}"({table.column}) VALUES (%s) RETURNING id', (first,)
            ).fetchone()
            committed = time.perf_counter()
            self._row_id = int(row[0])
            return committed, [(table.field, first, True)]
        if step == 1:
            conn.execute(
                f'UPDATE "{table.name}" SET {table.column} = %s WHERE id = %s',
                (renamed, self._row_id),
            )
            return time.perf_counter(), [(table.field, renamed, True), (table.field, first, False)]
        conn.execute(f'DELETE FROM "{table.name}" WHERE id = %s', (self._row_id,))
        return time.perf_counter(), [(table.field, renamed, False)]


# --- waiting on instances --------------------------------------------------------------------


class WaitTimeoutError(RuntimeError):
    pass


def wait_change(
    instances: Sequence[Instance],
    target: int,
    checks: Sequence[Check],
    started: float,
    timeout_s: float,
    poll_s: float,
    bridge: ManagedProcess | None = None,
) -> tuple[float, float]:
    """Seconds from ``started`` until every instance serves ``target``, and until it matches.

    Served: /ready ``version`` reached ``target``. Matchable: every check holds through the match
    endpoint; tried once the instance's index reports ``target`` (or at every poll when the
    instance does not report an index version, as the naive baseline).
    """
    served: dict[int, float] = {}
    matched: dict[int, float] = {}
    last: dict[int, object] = {}
    backoff = Backoff(poll_s)
    while True:
        for i, instance in enumerate(instances):
            if i in matched:
                continue
            state = readiness(instance.http)
            last[i] = state
            if not state.ready:
                instance.process.check_alive()  # a crash fails now, not at the deadline
            now = time.perf_counter()
            if i not in served and reached(state.version, target):
                served[i] = now
            index_ready = state.matcher_version is None or reached(state.matcher_version, target)
            if (
                i in served
                and index_ready
                and all(matches(instance.http, f, t) is p for f, t, p in checks)
            ):
                matched[i] = time.perf_counter()
        if len(matched) == len(instances):
            return max(served.values()) - started, max(matched.values()) - started
        if time.perf_counter() - started > timeout_s:
            for process in [*(i.process for i in instances), *([bridge] if bridge else [])]:
                process.check_alive()
            raise WaitTimeoutError(
                f"not served and matchable everywhere {timeout_s:g} s after the commit: target "
                f"version {target}, checks {list(checks)}, last /ready {last}, served by "
                f"{sorted(served)}; if the version format changed, update bench/_version.py"
            )
        backoff.sleep()


def wait_started(
    instance: Instance, spawned: float, probe: tuple[str, str], timeout_s: float
) -> tuple[float, float]:
    """Seconds from spawning until /ready answers 200, and until ``probe`` is matchable."""
    backoff = Backoff(0.01)
    ready_at = None
    while True:
        instance.process.check_alive()
        if ready_at is None and readiness(instance.http).ready:
            ready_at = time.perf_counter()
        if ready_at is not None and matches(instance.http, *probe):
            return ready_at - spawned, time.perf_counter() - spawned
        if time.perf_counter() - spawned > timeout_s:
            raise WaitTimeoutError(
                f"{instance.process.name} not {'matchable' if ready_at else 'ready'} after "
                f"{timeout_s:g} s:\n{instance.process.log_tail()}"
            )
        backoff.sleep()


# --- one system at one size ------------------------------------------------------------------


@dataclass
class Result:
    changes: int = 0
    served_ms: list[float] = field(default_factory=list)
    matchable_ms: list[float] = field(default_factory=list)
    bytes_per_change: float | None = None
    cpu_ms_per_change: dict[str, float] = field(default_factory=dict)
    idle_cpu_ms_per_s: dict[str, float] = field(default_factory=dict)
    rss_mb: list[float] = field(default_factory=list)
    peak_rss_mb: list[float] = field(default_factory=list)
    cold_start_s: tuple[float, float] | None = None
    start_s: tuple[float, float] | None = None
    bulk_s: tuple[float, float] | None = None
    sustained: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Options:
    changes: int
    timeout_s: float
    poll_s: float
    settle_s: float
    idle_s: float
    bulk: bool
    sustained: bool
    sustained_rate: float
    sustained_seconds: float
    sustained_poll_s: float


@dataclass(frozen=True, slots=True)
class Reading:
    """Counters at one moment of the cost phase."""

    at: float
    cpu: dict[str, float]
    output: int  # Redis total_net_output_bytes
    own: int  # bytes of it that this script received (INFO replies, subscription)

    def bytes_since(self, earlier: Reading) -> float:
        return (self.output - earlier.output) - (self.own - earlier.own)


class Run:
    """One system on the current data: start it, run the phases, stop it."""

    def __init__(self, servers: Servers, system: System, options: Options) -> None:
        self.servers = servers
        self.system = system
        self.options = options
        self.bridge: ManagedProcess | None = None
        self.instances: list[Instance] = []
        self.result = Result(changes=options.changes)
        self.conn = servers.connect()
        self.bulk_last_id: int | None = None

    # lifecycle

    def processes(self) -> list[ManagedProcess]:
        return [*([self.bridge] if self.bridge else []), *(i.process for i in self.instances)]

    def stop(self) -> None:
        for instance in self.instances:
            instance.http.close()
        for process in self.processes():
            process.terminate(grace=10)
        self.instances.clear()
        self.bridge = None
        self.conn.close()

    def start(self, probe: tuple[str, str]) -> None:
        name = self.system.name
        log(f"{name}: starting the bridge and instance 1 (cold)")
        self.bridge = self.servers.spawn(f"{name}-bridge", self.system.bridge_argv())
        self.result.cold_start_s = self._start_instance(1, probe)
        log(f"{name}: instance 1 ready / matchable after {self._pair(self.result.cold_start_s)}")
        self.result.start_s = self._start_instance(2, probe)
        log(
            f"{name}: instance 2 (joining) ready / matchable after "
            f"{self._pair(self.result.start_s)}"
        )

    def _start_instance(self, number: int, probe: tuple[str, str]) -> tuple[float, float]:
        port = find_free_port()
        spawned = time.perf_counter()
        process = self.servers.spawn(
            f"{self.system.name}-api-{number}", self.system.instance_argv(port)
        )
        instance = Instance(process, Http(f"http://127.0.0.1:{port}"))
        self.instances.append(instance)
        return wait_started(instance, spawned, probe, timeout_s=max(600.0, self.options.timeout_s))

    @staticmethod
    def _pair(pair: tuple[float, float] | None) -> str:
        return "-" if pair is None else f"{pair[0]:.2f} s / {pair[1]:.2f} s"

    def pids(self) -> dict[str, int]:
        assert self.bridge is not None
        pids = {"bridge": self.bridge.pid, "postgres": self.servers.postgres_pid}
        pids["redis"] = self.servers.redis_pid
        for number, instance in enumerate(self.instances, start=1):
            pids[f"api-{number}"] = instance.process.pid
        return pids

    # phases

    def latency(self) -> None:
        """Commit -> served and -> matchable, one change at a time, polling the instances."""
        plan = ChangePlan(f"Lat{self.system.tag}")
        for index in range(self.options.changes):
            committed, checks = plan.apply(self.conn)
            target = database_version(self.conn)
            served, matchable = wait_change(
                self.instances,
                target,
                checks,
                committed,
                self.options.timeout_s,
                self.options.poll_s,
                self.bridge,
            )
            self.result.served_ms.append(served * 1000)
            self.result.matchable_ms.append(matchable * 1000)
            if (index + 1) % 10 == 0 or index + 1 == self.options.changes:
                log(
                    f"{self.system.name}: {index + 1} changes, last served {served * 1000:.1f} ms,"
                    f" matchable {matchable * 1000:.1f} ms"
                )

    def costs(self) -> None:
        """CPU and Redis bytes per change, with nobody asking the instances anything."""
        options = self.options
        watch = CpuWatch(self.pids())
        quiet_set = [*APP_PROCESSES, "postgres"]
        allowance = 0.02 * options.settle_s  # 2 % of a CPU: timers, health checks
        log(f"{self.system.name}: waiting for the processes to go idle")
        if not watch.wait_quiet(quiet_set, options.settle_s, allowance, timeout_s=600):
            self.result.notes.append("processes were still busy before the cost phase")
        counter = MessageCounter(self.servers.redis_url)
        info = CountingRedis(self.servers.redis_url)
        try:
            # Idle rates: subtracted from the figures below, so they count the changes only.
            log(f"{self.system.name}: measuring the idle rates for {options.idle_s:g} s")
            idle = self._reading(watch, info, counter)
            time.sleep(options.idle_s)  # a measurement window, not a synchronisation
            after_idle = self._reading(watch, info, counter)
            idle_s = after_idle.at - idle.at
            idle_cpu = {k: (after_idle.cpu[k] - idle.cpu[k]) / idle_s for k in idle.cpu}
            idle_bytes = after_idle.bytes_since(idle) / idle_s
            self.result.idle_cpu_ms_per_s = {k: v * 1000 for k, v in idle_cpu.items()}

            log(f"{self.system.name}: {options.changes} changes, no polling")
            plan = ChangePlan(f"Cpu{self.system.tag}")
            begin = self._reading(watch, info, counter)
            published = counter.messages
            lost = busy = 0
            final_target = 0
            for index in range(options.changes):
                plan.apply(self.conn)
                if index == options.changes - 1:
                    # Read now: later, autovacuum's ANALYZE (it takes a transaction id) can
                    # move the database's version past every load, with no change to notify.
                    final_target = database_version(self.conn)
                # Paced by the bridge's Pub/Sub message, then idleness. A protocol that sends
                # none (say, Redis streams): after one miss, by idleness alone, longer windows.
                if lost == 0 and not counter.wait_beyond(published, options.timeout_s):
                    lost += 1
                published = counter.messages
                window = QUIET_WINDOW_S if lost == 0 else 4 * QUIET_WINDOW_S
                if not watch.wait_quiet(quiet_set, window, QUIET_ALLOWANCE_S, 30):
                    busy += 1
            settled = watch.wait_quiet(quiet_set, options.settle_s, allowance, timeout_s=600)
            end = self._reading(watch, info, counter)
        finally:
            counter.close()
            info.close()
        if lost:
            self.result.notes.append(
                "no Redis Pub/Sub message after a change: paced by idleness alone"
            )
        if busy:
            self.result.notes.append(f"{busy} changes: processes not idle within 30 s after it")
        if not settled:
            self.result.notes.append("processes still busy at the end of the cost phase")
        span = end.at - begin.at
        self.result.cpu_ms_per_change = {
            name: max(0.0, end.cpu[name] - begin.cpu[name] - idle_cpu[name] * span)
            * 1000
            / options.changes
            for name in begin.cpu
        }
        total_bytes = end.bytes_since(begin) - idle_bytes * span
        self.result.bytes_per_change = max(0.0, total_bytes) / options.changes / INSTANCES
        self._check_converged(final_target, plan)
        for instance in self.instances:
            memory = tree_memory(instance.process.pid)
            self.result.rss_mb.append(memory.rss_mb)
            self.result.peak_rss_mb.append(memory.peak_mb)

    def _reading(self, watch: CpuWatch, info: CountingRedis, counter: MessageCounter) -> Reading:
        before = info.received + counter.received
        output = info.output_bytes()
        # The INFO reply is counted in the *next* reading's total: count it as ours there.
        return Reading(time.monotonic(), watch.sample(rescan=True), output, before)

    def _check_converged(self, target: int, plan: ChangePlan) -> None:
        """After the unpolled phase, both instances must hold its last change (not timed)."""
        wait_change(
            self.instances,
            target,
            plan.last_checks,
            time.perf_counter(),
            600,
            self.options.poll_s,
            self.bridge,
        )

    def sustained(self) -> None:
        """``rate`` changes per second for ``seconds``; lag from each commit to both instances."""
        options = self.options
        log(
            f"{self.system.name}: sustained load, {options.sustained_rate:g} changes/s for "
            f"{options.sustained_seconds:g} s"
        )
        stop = threading.Event()
        observations: list[list[tuple[float, int, int | None]]] = [[] for _ in self.instances]

        def poll(index: int, url: str) -> None:
            http = Http(url)
            try:
                while not stop.is_set():
                    state = readiness(http)
                    if state.version is not None:
                        observations[index].append(
                            (time.perf_counter(), state.version, state.matcher_version)
                        )
                    time.sleep(options.sustained_poll_s)
            finally:
                http.close()

        pollers = [
            threading.Thread(target=poll, args=(i, inst.http.base_url), daemon=True)
            for i, inst in enumerate(self.instances)
        ]
        for thread in pollers:
            thread.start()
        plan = ChangePlan(f"Sus{self.system.tag}")
        commits: list[tuple[float, int]] = []
        total = round(options.sustained_rate * options.sustained_seconds)
        began = time.perf_counter()
        try:
            for index in range(total):
                delay = began + index / options.sustained_rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)  # pacing the writer, not waiting for a condition
                committed, _ = plan.apply(self.conn)
                commits.append((committed, database_version(self.conn)))
            elapsed = time.perf_counter() - began
            last_target = commits[-1][1]
            deadline = time.perf_counter() + max(600.0, options.timeout_s)
            while not all(
                obs
                and reached(obs[-1][1], last_target)
                and (obs[-1][2] is None or reached(obs[-1][2], last_target))
                for obs in observations
            ):
                if time.perf_counter() > deadline:
                    raise WaitTimeoutError("instances did not catch up after the sustained load")
                time.sleep(0.05)
        finally:
            stop.set()
            for thread in pollers:
                thread.join(timeout=10)
        served = _lags(commits, observations, matcher=False)
        matchable = _lags(commits, observations, matcher=True)
        self.result.sustained = {
            "changes": total,
            "rate": total / elapsed,
            "served_ms": served,
            "matchable_ms": matchable,
            "poll_ms": options.sustained_poll_s * 1000,
        }
        log(
            f"{self.system.name}: sustained {total / elapsed:.0f}/s, served lag p99 "
            f"{_percentile(served, 0.99):.0f} ms"
        )

    def bulk(self) -> None:
        """One INSERT of 100k projects -> served and -> matchable on both instances."""
        log(f"{self.system.name}: one INSERT of {BULK_ROWS:,} projects")
        self.bulk_last_id, probe, committed = _data.insert_bulk(
            self.conn, BULK_ROWS, "Bulk Scalebench"
        )
        target = database_version(self.conn)
        served, matchable = wait_change(
            self.instances,
            target,
            [("projects", probe, True)],
            committed,
            max(600.0, self.options.timeout_s),
            0.005,
            self.bridge,
        )
        self.result.bulk_s = (served, matchable)
        log(f"{self.system.name}: bulk served {served:.2f} s, matchable {matchable:.2f} s")


def _lags(
    commits: list[tuple[float, int]],
    observations: list[list[tuple[float, int, int | None]]],
    *,
    matcher: bool,
) -> list[float]:
    """Per commit: ms until every instance was seen holding it (empty when not reported).

    Observations are in time order; for each commit, the first one at or after it (bisect) that
    reports its version, scanning forward.
    """
    series = []
    for obs in observations:
        reported = [o[2] if matcher else o[1] for o in obs]
        if any(r is None for r in reported):
            return []
        series.append(([o[0] for o in obs], reported))
    out = []
    for committed, target in commits:
        worst = 0.0
        for times, versions in series:
            j = bisect.bisect_left(times, committed)
            while j < len(times) and not reached(versions[j], target):
                j += 1
            if j == len(times):
                return []
            worst = max(worst, times[j] - committed)
        out.append(worst * 1000)
    return out


def run_system(
    servers: Servers, system: System, options: Options, probe: tuple[str, str]
) -> Result:
    run = Run(servers, system, options)
    try:
        run.start(probe)
        log(f"{system.name}: {options.changes} changes, polling for served and matchable")
        run.latency()
        run.costs()
        if options.sustained:
            run.sustained()
        if options.bulk:
            run.bulk()
    except BaseException:
        for process in run.processes():
            print(f"--- {process.name} log (last lines):\n{process.log_tail(40)}", file=sys.stderr)
        raise
    finally:
        run.stop()
        if run.bulk_last_id is not None:
            with servers.connect() as conn:
                _data.delete_bulk(conn, run.bulk_last_id)
        servers.flush_redis()
    return run.result


# --- report ----------------------------------------------------------------------------------


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    goal: str
    values: Callable[[Result], tuple[float, ...] | None]
    unit: str
    limit: float | None  # goal on the last value (the one compared); None: no goal
    digits: int = 1


ROWS = (
    Row(
        "commit → both instances serve it, p50 / p99",
        "p99 ≤ 50 ms",
        lambda r: (
            (_percentile(r.served_ms, 0.5), _percentile(r.served_ms, 0.99)) if r.served_ms else None
        ),
        "ms",
        50,
    ),
    Row(
        "commit → matchable on both instances, p50 / p99",
        "p99 ≤ 100 ms",
        lambda r: (
            (_percentile(r.matchable_ms, 0.5), _percentile(r.matchable_ms, 0.99))
            if r.matchable_ms
            else None
        ),
        "ms",
        100,
    ),
    Row(
        "bytes Redis sends per change, per instance (all its output ÷ 2)",
        "≤ 16 kB",
        lambda r: None if r.bytes_per_change is None else (r.bytes_per_change / 1000,),
        "kB",
        16,
        2,
    ),
    Row(
        "CPU per change, each instance",
        "≤ 10 ms",
        lambda r: (
            tuple(r.cpu_ms_per_change[f"api-{n}"] for n in range(1, INSTANCES + 1))
            if r.cpu_ms_per_change
            else None
        ),
        "ms",
        10,
    ),
    Row(
        "CPU per change, bridge",
        "≤ 20 ms",
        lambda r: (r.cpu_ms_per_change["bridge"],) if r.cpu_ms_per_change else None,
        "ms",
        20,
    ),
    Row(
        "instance memory (RSS), matching on",
        "≤ 1 GB",
        lambda r: tuple(r.rss_mb) or None,
        "MB",
        1000,
        0,
    ),
    Row(
        "instance start → ready",
        "≤ 5 s",
        lambda r: None if r.start_s is None else (r.start_s[0],),
        "s",
        5,
        2,
    ),
    Row(
        "instance start → matchable",
        "≤ 20 s",
        lambda r: None if r.start_s is None else (r.start_s[1],),
        "s",
        20,
        2,
    ),
    Row(
        "bulk: 100k projects in one INSERT → served everywhere",
        "≤ 3 s",
        lambda r: None if r.bulk_s is None else (r.bulk_s[0],),
        "s",
        3,
        2,
    ),
    Row(
        "bulk: 100k projects in one INSERT → matchable everywhere",
        "≤ 10 s",
        lambda r: None if r.bulk_s is None else (r.bulk_s[1],),
        "s",
        10,
        2,
    ),
    Row(
        "CPU per change, PostgreSQL (all backends)",
        "",
        lambda r: (r.cpu_ms_per_change["postgres"],) if r.cpu_ms_per_change else None,
        "ms",
        None,
    ),
    Row(
        "CPU per change, Redis",
        "",
        lambda r: (r.cpu_ms_per_change["redis"],) if r.cpu_ms_per_change else None,
        "ms",
        None,
        2,
    ),
)


def _format(values: tuple[float, ...] | None, unit: str, digits: int) -> str:
    if values is None:
        return "-"
    return " / ".join(f"{v:,.{digits}f}" for v in values) + f" {unit}"


def _ratio(naive: tuple[float, ...] | None, new: tuple[float, ...] | None) -> str:
    if naive is None or new is None:
        return "-"
    if len(naive) != len(new):
        naive, new = (max(naive),), (max(new),)
    parts = []
    for a, b in zip(naive, new, strict=True):
        parts.append("∞" if b <= 0 else f"{a / b:,.1f}x" if a / b < 100 else f"{a / b:,.0f}x")
    return " / ".join(parts)


def table(size_label: str, description: str, new: Result, naive: Result | None, terms: int) -> str:
    lines = [
        f"### {size_label} terms ({description}; {terms:,} distinct terms in all)",
        "",
        "| figure | goal at 1M terms | vocabsync | met | naive | naive / vocabsync |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in ROWS:
        ours = row.values(new)
        theirs = row.values(naive) if naive is not None else None
        met = "" if row.limit is None or ours is None else ("✓" if max(ours) <= row.limit else "✗")
        lines.append(
            f"| {row.label} | {row.goal or '-'} | {_format(ours, row.unit, row.digits)} | {met} "
            f"| {_format(theirs, row.unit, row.digits)} | {_ratio(theirs, ours)} |"
        )
    lines.append("")
    notes = [
        f"changes timed: vocabsync {new.changes}"
        + (f", naive {naive.changes}" if naive is not None else "")
        + " (single-row inserts, renames and deletes over the five tables, one at a time)",
    ]
    for name, result in (("vocabsync", new), ("naive", naive)):
        if result is None:
            continue
        if result.cold_start_s:
            notes.append(
                f"{name}: first instance, started with the bridge: ready "
                f"{result.cold_start_s[0]:.2f} s, matchable {result.cold_start_s[1]:.2f} s"
            )
        if result.idle_cpu_ms_per_s:
            idle = ", ".join(f"{k} {v:.1f}" for k, v in result.idle_cpu_ms_per_s.items())
            notes.append(f"{name}: idle CPU subtracted (ms per s): {idle}")
        if result.peak_rss_mb:
            notes.append(
                f"{name}: instance peak RSS (VmHWM): "
                + " / ".join(f"{v:,.0f} MB" for v in result.peak_rss_mb)
            )
        notes.extend(f"{name}: {note}" for note in result.notes)
    lines.extend(f"- {note}" for note in notes)
    lines.append("")
    return "\n".join(lines)


def sustained_table(rows: list[tuple[str, Result]]) -> str:
    lines = [
        "### Sustained load",
        "",
        "| terms | changes | rate achieved | commit → served, p50 / p99 / max "
        "| commit → matchable, p50 / p99 / max | goal: served p99 ≤ 200 ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, result in rows:
        data = result.sustained
        if data is None:
            continue

        def triple(values: list[float]) -> str:
            if not values:
                return "not reported"
            return (
                f"{_percentile(values, 0.5):,.0f} / {_percentile(values, 0.99):,.0f} / "
                f"{max(values):,.0f} ms"
            )

        p99 = _percentile(data["served_ms"], 0.99) if data["served_ms"] else float("inf")
        lines.append(
            f"| {label} | {data['changes']:,} | {data['rate']:.0f}/s | {triple(data['served_ms'])} "
            f"| {triple(data['matchable_ms'])} | {'✓' if p99 <= 200 else '✗'} |"
        )
    lines.append("")
    lines.append(
        f"- vocabsync only (the naive pipeline reloads everything per change and falls behind); "
        f"lags seen by polling /ready every {rows[0][1].sustained['poll_ms']:.0f} ms per instance"
        if rows and rows[0][1].sustained
        else "- not run"
    )
    return "\n".join(lines) + "\n"


# --- main ------------------------------------------------------------------------------------


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    return int(float(number) * scale)


def size_label(terms: int) -> str:
    if terms >= 1_000_000 and terms % 1_000_000 == 0:
        return f"{terms // 1_000_000}M"
    if terms >= 1_000 and terms % 1_000 == 0:
        return f"{terms // 1_000}k"
    return f"{terms:,}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--sizes", default="10k,200k,1m", help="vocabulary sizes, in terms")
    parser.add_argument("--changes", type=int, default=100, help="single-row changes per phase")
    parser.add_argument(
        "--naive-changes",
        type=int,
        default=20,
        help="changes per phase for the naive baseline (at most --changes; it reloads "
        "everything per change, so a few give its figures)",
    )
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--skip-sustained", action="store_true")
    parser.add_argument("--skip-bulk", action="store_true")
    parser.add_argument("--sustained-rate", type=float, default=100.0, help="changes per second")
    parser.add_argument("--sustained-seconds", type=float, default=30.0)
    parser.add_argument(
        "--sustained-poll-ms", type=float, default=10.0, help="/ready poll interval then"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per change")
    parser.add_argument("--poll-ms", type=float, default=1.0, help="first poll interval")
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=6.0,
        help="idle time that ends the cost phase (longer than the matcher's quiet rebuild delay)",
    )
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="idle-rate window")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    base = dict(
        timeout_s=args.timeout,
        poll_s=args.poll_ms / 1000,
        settle_s=args.settle_seconds,
        idle_s=args.idle_seconds,
        bulk=not args.skip_bulk,
        sustained_rate=args.sustained_rate,
        sustained_seconds=args.sustained_seconds,
        sustained_poll_s=args.sustained_poll_ms / 1000,
    )
    print(
        f"## Scale benchmark ({os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at start)\n",
        flush=True,
    )
    sustained_rows: list[tuple[str, Result]] = []
    servers = Servers()
    with servers:
        try:
            log(f"private PostgreSQL and Redis up; logs in {servers.log_dir}")
            servers.migrate()
            for terms in sizes:
                sizes_ = _data.Sizes.for_terms(terms)
                label = size_label(terms)
                log(f"{label}: building {sizes_}")
                began = time.perf_counter()
                with servers.connect() as conn:
                    _data.build(conn, sizes_)
                    distinct = _data.vocabulary_terms(conn)
                    row = conn.execute(
                        'SELECT project_name FROM "Project" WHERE id = %s',
                        (max(1, sizes_.projects // 2),),
                    ).fetchone()
                assert row is not None
                probe = ("projects", str(row[0]))
                log(f"{label}: built in {time.perf_counter() - began:.1f} s, {distinct:,} terms")
                sustained = not args.skip_sustained and terms == max(sizes)
                new = run_system(
                    servers,
                    VOCABSYNC,
                    Options(changes=args.changes, sustained=sustained, **base),
                    probe,
                )
                naive = None
                if not args.skip_naive:
                    naive = run_system(
                        servers,
                        NAIVE,
                        Options(
                            changes=min(args.changes, args.naive_changes), sustained=False, **base
                        ),
                        probe,
                    )
                description = (
                    f"{sizes_.projects:,} projects + {sizes_.files:,} file names + "
                    f"{sizes_.categories:,} categories"
                )
                print(table(label, description, new, naive, distinct), flush=True)
                if new.sustained is not None:
                    sustained_rows.append((label, new))
            if not args.skip_sustained:
                print(sustained_table(sustained_rows), flush=True)
        finally:
            if args.keep_logs:
                log(f"logs kept in {servers.log_dir}")
            else:
                with contextlib.suppress(OSError):
                    shutil.rmtree(servers.log_dir)
    log("done")
    return 0


if __name__ == "__main__":
    # SIGTERM (a test's timeout, `timeout`) ends like Ctrl-C: the finally blocks stop every
    # process and server this script started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
