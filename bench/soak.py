"""Chaos soak: the real stack under steady writes, faults injected at random, convergence timed.

Starts private servers (bench/_soak_servers.py): PostgreSQL as a primary and an asynchronous
streaming standby, every DATABASE_URL naming both with ``target_session_attrs=read-write``, and
Redis as a master, a replica and three Sentinels (REDIS_SENTINELS / REDIS_SENTINEL_MASTER).
Then ``vocabsync migrate``, the demo vocabulary, two ``vocabsync bridge`` (one active, one
standby) and three ``vocabsync serve``. Each bridge reaches both PostgreSQL addresses through
proxies of its own; every process reaches both Redis nodes and the Sentinels through proxies
shared by all, which apply each process's own mode to its own connections (the Sentinels hand
every client the same addresses, so a per-process address cannot be used; bench/_proxy.py).
Four writer threads commit a seeded mix of inserts, renames, deletes, multi-statement
transactions and TRUNCATEs on the five tables (bench/_soak_writers.py) while faults are drawn at
random (a shuffled deck of the kinds, so each is drawn equally often) from
bench/_soak_faults.py: kill -9 of the active bridge, the standby bridge or an
instance, SIGSTOP of an instance or the active bridge for 5 s, kill -9 of the Redis master
(Sentinel failover; the old master comes back empty as a replica), a Redis restart (the master,
empty), pg_terminate_backend of every vocabsync session, a PostgreSQL fast restart, standby
promotion (kill -9 of the primary, the standby promoted; a new standby is made from the new
primary after the check), and on each link (bridge↔PostgreSQL, bridge↔Redis, instance↔Redis) a
10 s blackhole or 10 s of 200 ms delay. A killed instance is restarted at once, as a supervisor
would; a killed bridge only after the convergence check, so the other bridge must take over.
One check in five (``--back-to-back``) follows two faults injected back to back.

After each fault heals (for half of them, after up to 3 s more of writes), writes pause and the
soak waits until every instance serves, from its own snapshot, exactly the six lists the
database holds (all of them compared, with ETag polls). Two timings are recorded: from the
fault's end, and from the last commit before the check. It prints faults by kind, convergence
p50 / p99 / max per kind for both, divergences left at the deadline, changes lost (every marker
value a writer committed must be served unless it was removed later, and none it removed),
commits a promotion discarded (acknowledged by the old primary, never replicated: the ledger is
set to the new primary's rows, so they must be gone from every instance, and are counted apart,
not as lost), processes that died without the soak killing them, crash lines in the processes'
logs (tracebacks, crashed sessions or listeners: each one fails the run), and the output of
``vocabsync status`` run at the end. Exit status 1 unless all of those are 0 and status is OK;
the seed and the command that replays it are printed. Every ``--report-every`` faults (25) the
report so far goes to ``--report-file`` (or stderr), so a long run stopped early leaves figures.

    .venv/bin/python bench/soak.py --faults 30 --seed 1           # CI's short soak
    .venv/bin/python bench/soak.py --faults 1000 --seed 7 --report-file soak.md   # hours
    .venv/bin/python bench/soak.py --fanout 20 --commits 200      # commit -> 20 instances

``--kinds 'kill -9,Redis restart'`` draws only the kinds whose names contain one of the
patterns; ``--keep-going`` carries on after a divergence; ``--keep-logs`` keeps the processes'
logs. Progress goes to stderr, the report (markdown) to stdout.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import random
import shutil
import statistics
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from _probe import Backoff, Http, readiness
from _proxy import ProxyHub
from _soak_faults import KINDS, Chaos, FaultKind, select, without_promotion
from _soak_servers import ChaosServers
from _soak_stack import FIELDS, Database, Lists, Member, SoakStack
from _soak_writers import Writers
from _stack import Servers
from _version import database_version, reached

STARTED = time.monotonic()
BACK_TO_BACK = "two faults back to back"
STATUS_WAIT_S = 30.0


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:8.1f} s] {message}", file=sys.stderr, flush=True)


# --- convergence -----------------------------------------------------------------------------


def differences(expected: Lists, served: Lists | None, limit: int = 3) -> str:
    if served is None:
        return "no answer from its snapshot (down, or reading through in fallback)"
    parts = []
    for name in FIELDS:
        missing = sorted(expected[name] - served[name])
        extra = sorted(served[name] - expected[name])
        if missing:
            parts.append(f"{name}: {len(missing)} missing {missing[:limit]}")
        if extra:
            parts.append(f"{name}: {len(extra)} extra {extra[:limit]}")
    return "; ".join(parts) or "equal"


@dataclass
class Convergence:
    seconds: float | None
    """None: not converged by the deadline."""
    expected: Lists
    report: str = ""


def converge(stack: SoakStack, db: Database, deadline_s: float) -> Convergence:
    """Wait until every instance serves exactly the database's lists (writes are paused)."""
    started = time.monotonic()
    expected = db.run(stack.database_lists)
    backoff = Backoff(0.005, fraction=0.05, maximum_s=0.1)
    last: dict[str, Lists | None] = {}
    while True:
        stack.check_deaths()
        pending = []
        for member in stack.instances:
            last[member.name] = stack.served(member)
            if last[member.name] != expected:
                pending.append(member)
        if not pending:
            return Convergence(time.monotonic() - started, expected)
        if time.monotonic() - started > deadline_s:
            return Convergence(None, expected, _divergence_report(stack, pending, expected, last))
        backoff.sleep()


def _divergence_report(
    stack: SoakStack, pending: list[Member], expected: Lists, last: dict[str, Lists | None]
) -> str:
    lines = []
    for member in pending:
        lines.append(f"  {member.name}: {differences(expected, last[member.name])}")
        _, body = Http(f"http://127.0.0.1:{member.port}").request("GET", "/ready")
        lines.append(f"    /ready: {body}")
    for bridge in stack.bridges:
        lines.append(f"  {bridge.name}: active={stack.bridge_active(bridge)}")
    return "\n".join(lines)


# --- the soak --------------------------------------------------------------------------------


@dataclass
class Tally:
    seconds: dict[str, list[float]] = field(default_factory=dict)
    """From the fault's end."""
    lag: dict[str, list[float]] = field(default_factory=dict)
    """From the last commit before the check."""
    injected: dict[str, int] = field(default_factory=dict)
    divergences: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    ledger: list[str] = field(default_factory=list)

    def add(self, kind: str, seconds: float, lag: float) -> None:
        self.seconds.setdefault(kind, []).append(seconds)
        self.lag.setdefault(kind, []).append(lag)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def lost_changes(writers: Writers, stack: SoakStack) -> list[str]:
    """Markers a writer committed that an instance does not serve, or that a writer removed and
    an instance still serves."""
    expected = writers.ledger.expected_markers()
    gone = writers.ledger.gone_markers()
    problems = []
    for member in stack.instances:
        served = stack.served(member)
        if served is None:
            problems.append(f"{member.name}: no answer")
            continue
        for name in FIELDS:
            missing = expected[name] - served[name]
            stale = gone & served[name]
            if missing:
                problems.append(
                    f"{member.name} {name}: {len(missing)} missing {sorted(missing)[:3]}"
                )
            if stale:
                problems.append(f"{member.name} {name}: {len(stale)} removed {sorted(stale)[:3]}")
    return problems


class Soak:
    def __init__(self, args: argparse.Namespace, kinds: list[FaultKind]) -> None:
        self.args = args
        self.kinds = kinds
        self.rng = random.Random(args.seed)
        self.tally = Tally()
        self.faults_done = 0
        self.stack: SoakStack | None = None
        self.chaos: Chaos | None = None
        self.writers: Writers | None = None
        self.unclean: list[str] = []
        self.error: str | None = None
        self.deck: list[FaultKind] = []
        self.status: tuple[int, str] | None = None
        """``vocabsync status`` at the end: exit code, output."""

    def run(self, servers: ChaosServers, hub: ProxyHub, stack: SoakStack) -> None:
        args = self.args
        self.stack = stack
        log(
            f"starting: migrate ({args.trigger_mode} mode), demo vocabulary, 2 bridges, 3 instances"
        )
        stack.start()
        db = Database(servers.database_url)
        writers = Writers(args.writers, args.seed, servers.database_url, args.rate)
        chaos = Chaos(stack, servers, hub, self.rng, writers, db)
        self.chaos = chaos
        self.writers = writers
        writers.start()
        try:
            self._loop(stack, chaos, db, writers)
            self._final(stack, db, writers)
            self.status = self._final_status(servers, stack)
            log(f"vocabsync status: exit {self.status[0]}\n{self.status[1]}")
        finally:
            writers.stop()
            db.close()
            self.unclean = stack.stop()

    @staticmethod
    def _final_status(servers: ChaosServers, stack: SoakStack) -> tuple[int, str]:
        """``vocabsync status`` once it is OK and names every bridge (a standby bridge that
        lost its session in the last fault is back after its reconnect delay, 5 s); the last
        answer after STATUS_WAIT_S otherwise."""
        deadline = time.monotonic() + STATUS_WAIT_S
        while True:
            code, output = servers.status()
            complete = all(f"- {bridge.name}:" in output for bridge in stack.bridges)
            if (code == 0 and complete) or time.monotonic() > deadline:
                return code, output
            time.sleep(1.0)  # a status run is a process start; polling faster gains nothing

    def draw(self) -> FaultKind:
        """The next kind from a shuffled deck of all the kinds, refilled when empty: every
        kind is drawn equally often, and a run of at least as many faults as kinds draws each
        one (CI's short soak covers them all)."""
        if not self.deck:
            self.deck = list(self.kinds)
            self.rng.shuffle(self.deck)
        return self.deck.pop()

    def _loop(self, stack: SoakStack, chaos: Chaos, db: Database, writers: Writers) -> None:
        args = self.args
        reported = 0
        while self.faults_done < args.faults:
            time.sleep(self.rng.uniform(args.gap_min, args.gap_max))  # writes go on meanwhile
            drawn = [self.draw()]
            if self.faults_done + 1 < args.faults and self.rng.random() < args.back_to_back:
                drawn.append(self.draw())
            details = []
            for kind in drawn:
                while chaos.after_check:  # a killed bridge is back before the next fault
                    chaos.after_check.pop(0)()
                assert kind.inject is not None
                details.append(f"{kind.name} ({kind.inject(chaos)})")
                self.faults_done += 1
                self.tally.injected[kind.name] = self.tally.injected.get(kind.name, 0) + 1
            label = drawn[0].name if len(drawn) == 1 else BACK_TO_BACK
            what = f"fault {self.faults_done}/{args.faults}: {' then '.join(details)}"
            healed = time.monotonic()
            if self.rng.random() < args.write_on:
                # Writes go on while the system recovers (resyncs racing commits).
                time.sleep(self.rng.uniform(0.2, 3.0))
            if not writers.pause():
                raise RuntimeError("writers did not pause within 60 s")
            paused = time.monotonic()
            result = converge(stack, db, args.deadline)
            if result.seconds is None:
                self.tally.divergences.append(f"{what}:\n{result.report}")
                log(f"{what}: NOT converged\n{result.report}")
            else:
                now = time.monotonic()
                self.tally.add(label, now - healed, now - paused)
                log(
                    f"{what}: converged {now - healed:.2f} s after it ended, "
                    f"{now - paused:.2f} s after the last commit; {writers.commits} commits"
                )
                ledger = db.run(writers.ledger.mismatches)
                if ledger:
                    self.tally.ledger += ledger
                    log(f"ledger and database disagree: {ledger[:5]}")
            while chaos.after_check:
                chaos.after_check.pop(0)()
            writers.resume()
            if writers.errors():
                raise RuntimeError(f"writer failed: {writers.errors()}")
            if args.report_every and self.faults_done // args.report_every > reported:
                reported = self.faults_done // args.report_every
                self.write_partial()
            if result.seconds is None and not args.keep_going:
                log("stopping at the first divergence (--keep-going to carry on)")
                break

    def _final(self, stack: SoakStack, db: Database, writers: Writers) -> None:
        if not writers.pause():
            raise RuntimeError("writers did not pause within 60 s")
        result = converge(stack, db, self.args.deadline)
        if result.seconds is None:
            self.tally.divergences.append(f"at the end:\n{result.report}")
        self.tally.lost = lost_changes(writers, stack)
        self.tally.ledger += db.run(writers.ledger.mismatches)

    # --- report --------------------------------------------------------------------------------

    def write_partial(self) -> None:
        """The report so far, so a long run stopped early still leaves its figures: to
        --report-file (rewritten each time) or to stderr."""
        text, _ = self.render(time.monotonic() - STARTED, final=False)
        if self.args.report_file:
            path = self.args.report_file
            with open(f"{path}.tmp", "w") as handle:
                handle.write(text)
            os.replace(f"{path}.tmp", path)
            log(f"partial report after {self.faults_done} faults in {path}")
        else:
            log(f"partial report after {self.faults_done} faults:\n{text}")

    def report(self, elapsed: float) -> bool:
        text, ok = self.render(elapsed, final=True)
        print(text, end="", flush=True)
        if self.args.report_file:
            with open(self.args.report_file, "w") as handle:
                handle.write(text)
        return ok

    def render(self, elapsed: float, final: bool) -> tuple[str, bool]:
        """The report as markdown, and whether the goals are met (``final``: the run is over;
        otherwise a partial report, marked as such)."""
        lines: list[str] = []

        def out(text: str = "") -> None:
            lines.append(text)

        tally, args = self.tally, self.args
        deaths = self.stack.deaths if self.stack else []
        anomalies = self.chaos.anomalies if self.chaos else []
        commits = self.writers.commits if self.writers else 0
        in_doubt = self.writers.in_doubt if self.writers else 0
        failed = self.writers.failures if self.writers else 0
        partial = "" if final else " (partial: the run is still going)"
        out(
            f"## Chaos soak: {self.faults_done} faults in {elapsed / 60:.1f} min, "
            f"seed {args.seed}{partial}"
        )
        out()
        out(
            f"{args.writers} writers, {commits} commits ({in_doubt} in doubt and resolved, "
            f"{failed} failed), 2 bridges, 3 instances, {args.trigger_mode} triggers, "
            f"PostgreSQL primary + asynchronous streaming standby, Redis master + replica + "
            f"3 Sentinels. "
            f"Convergence: until every instance serves the database's six lists, from the "
            f"fault's end (after {args.write_on:.0%} of the faults, writes went on for up to "
            f"3 s more) and from the last commit before the check."
        )
        out()
        out(
            "| fault | count | from the fault's end: p50 | p99 | max "
            "| from the last commit: p50 | p99 | max |"
        )
        out("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        everything: list[float] = []
        lags: list[float] = []
        for kind in KINDS:
            values = tally.seconds.get(kind.name, [])
            lag = tally.lag.get(kind.name, [])
            everything += values
            lags += lag
            count = tally.injected.get(kind.name, 0)
            if not kind.available:
                out(f"| {kind.name} | - | {kind.unavailable} | | | | | |")
            elif kind in self.kinds:
                out(f"| {kind.name} | {count} | {_cells(values)} | {_cells(lag)} |")
        values = tally.seconds.get(BACK_TO_BACK, [])
        lag = tally.lag.get(BACK_TO_BACK, [])
        everything += values
        lags += lag
        out(
            f"| {BACK_TO_BACK} (counted above) | {len(values)} pairs | {_cells(values)} "
            f"| {_cells(lag)} |"
        )
        out(
            f"| **all** | {self.faults_done} faults, {len(everything)} checks | "
            f"{_cells(everything)} | {_cells(lags)} |"
        )
        out()
        out(f"- divergences left at the deadline ({args.deadline:g} s): {len(tally.divergences)}")
        out(f"- changes lost: {len(tally.lost)}")
        discarded = self.chaos.discarded if self.chaos else []
        servers = self.chaos.servers if self.chaos else None
        out(
            f"- commits the promotions discarded (acknowledged by the old primary, never "
            f"replicated; gone from every instance as from the database, not counted as lost): "
            f"{len(discarded)} rows in {servers.promotions if servers else 0} promotions"
        )
        out(f"- processes that died on their own: {len(deaths)}")
        out(f"- ledger vs database mismatches: {len(tally.ledger)}")
        crashes, suspect = self.stack.log_findings() if self.stack else ([], {})
        out(f"- unexpected exceptions in the processes' logs: {len(crashes)}")
        if suspect:
            out(f"- suspect log lines: {suspect}")
        if anomalies:
            out(f"- anomalies: {len(anomalies)}")
        if self.status is not None:
            out(f"- `vocabsync status` at the end: exit {self.status[0]}")
        if self.error:
            out(f"- the soak itself stopped on an error:\n\n{self.error}")
        for text in tally.divergences:
            out(f"\ndivergence {text}")
        for text in tally.lost[:20]:
            out(f"\nlost: {text}")
        for death in deaths:
            out(f"\n{death.name} died on its own (exit {death.code}):\n{death.log_tail}")
        for text in [*tally.ledger[:20], *anomalies, *self.unclean]:
            out(f"\n{text}")
        p99 = percentile(everything, 0.99) if everything else 0.0
        for line in crashes[:20]:
            out(f"\n{line}")
        ok = not (tally.divergences or tally.lost or deaths or tally.ledger or self.error)
        ok = ok and not crashes and not anomalies
        if final:  # a partial report judges what happened so far, not what is still to come
            ok = ok and self.faults_done == args.faults
            ok = ok and self.status is not None and self.status[0] == 0
        if self.status is not None:
            out(f"\n`vocabsync status` at the end (exit {self.status[0]}):\n")
            out("```")
            out(self.status[1])
            out("```")
        out()
        out(
            f"goals{'' if final else ' so far'}: 0 divergences, 0 lost, 0 deaths: "
            f"{'met' if ok else 'NOT met'}; "
            f"convergence p99 ≤ 10 s: {'met' if p99 <= 10 else 'NOT met'} ({p99:.2f} s)"
        )
        if final and not ok:
            out(f"\nFAILED with seed {args.seed}; replay: {replay_command(args)}")
        return "\n".join(lines) + "\n", ok


def _cells(values: list[float]) -> str:
    if not values:
        return "- | - | -"
    return (
        f"{percentile(values, 0.5):.2f} s | {percentile(values, 0.99):.2f} s | {max(values):.2f} s"
    )


def replay_command(args: argparse.Namespace) -> str:
    parts = [".venv/bin/python bench/soak.py", f"--faults {args.faults}", f"--seed {args.seed}"]
    if args.kinds:
        parts.append(f"--kinds '{args.kinds}'")
    if args.trigger_mode != "delta":
        parts.append(f"--trigger-mode {args.trigger_mode}")
    return " ".join(parts)


# --- fan-out -----------------------------------------------------------------------------------


def fanout(args: argparse.Namespace, servers: Servers, hub: ProxyHub) -> bool:
    """N single-row commits one at a time; each timed until all instances serve it."""
    stack = SoakStack(servers, hub, bridge_count=1, instance_count=args.fanout, proxied=False)
    log(f"fan-out: starting 1 bridge and {args.fanout} instances")
    stack.start()
    db = Database(servers.database_url)
    https = [Http(f"http://127.0.0.1:{m.port}") for m in stack.instances]
    pool = concurrent.futures.ThreadPoolExecutor(len(https), thread_name_prefix="fanout")
    seconds: list[float] = []
    try:
        for index in range(args.commits):
            statement, params = _fanout_change(index)
            db.run(lambda conn, s=statement, p=params: conn.execute(s, p))
            committed = time.perf_counter()
            target = db.run(database_version)
            waits = [pool.submit(_wait_version, http, target, committed) for http in https]
            seconds.append(max(w.result() for w in waits))
            if (index + 1) % 50 == 0:
                log(f"fan-out: {index + 1} commits, last {seconds[-1] * 1000:.1f} ms")
        result = converge(stack, db, args.deadline)
        deaths = stack.check_deaths()
    finally:
        pool.shutdown()
        for http in https:
            http.close()
        db.close()
        stack.stop()
    ms = [s * 1000 for s in seconds]
    print(f"## Fan-out: commit → all {args.fanout} instances serve it, {len(ms)} commits")
    print()
    print("| p50 | p99 | max | mean |")
    print("| ---: | ---: | ---: | ---: |")
    print(
        f"| {percentile(ms, 0.5):.1f} ms | {percentile(ms, 0.99):.1f} ms | {max(ms):.1f} ms | "
        f"{statistics.mean(ms):.1f} ms |"
    )
    ok = result.seconds is not None and not deaths
    print(f"\nfinal lists equal the database everywhere: {result.seconds is not None}")
    print(f"processes that died on their own: {len(deaths)}")
    return ok


def _fanout_change(index: int) -> tuple[str, tuple[Any, ...]]:
    k, step = divmod(index, 3)
    name = f"Fanout Project {k:05d}"
    if step == 0:
        return 'INSERT INTO "Project"(project_name, location) VALUES (%s, %s)', (name, "Fanout")
    if step == 1:
        return 'UPDATE "Project" SET project_name = %s WHERE project_name = %s', (
            name + " v2",
            name,
        )
    return 'DELETE FROM "Project" WHERE project_name = %s', (name + " v2",)


def _wait_version(http: Http, target: int, committed: float, timeout_s: float = 30.0) -> float:
    backoff = Backoff(0.002)
    while True:
        state = readiness(http)
        if reached(state.version, target):
            return time.perf_counter() - committed
        if time.perf_counter() - committed > timeout_s:
            raise TimeoutError(f"{http.base_url} did not reach {target} in {timeout_s:g} s")
        backoff.sleep()


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=30)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one (printed)")
    parser.add_argument("--kinds", default=None, help="comma-separated name patterns")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--rate", type=float, default=5.0, help="commits/s per writer")
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds to converge")
    parser.add_argument("--gap-min", type=float, default=0.5, help="writes between faults, s")
    parser.add_argument("--gap-max", type=float, default=2.0)
    parser.add_argument(
        "--back-to-back",
        type=float,
        default=0.2,
        help="share of checks preceded by two faults in a row instead of one",
    )
    parser.add_argument(
        "--write-on",
        type=float,
        default=0.5,
        help="share of faults after which writes go on for up to 3 s before the check",
    )
    parser.add_argument(
        "--trigger-mode", choices=("precise", "statement", "delta"), default="delta"
    )
    parser.add_argument("--fanout", type=int, default=0, help="fan-out mode: N instances")
    parser.add_argument("--commits", type=int, default=200, help="fan-out mode: commits")
    parser.add_argument(
        "--report-every",
        type=int,
        default=25,
        help="write the report so far every N faults (0: never)",
    )
    parser.add_argument(
        "--report-file",
        default=None,
        help="where the partial reports (and the final one) go; default: stderr",
    )
    parser.add_argument("--keep-going", action="store_true")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1 << 31)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    kinds = select(args.kinds)
    log(f"seed {args.seed}")
    # Every child (migrate, bridges, instances) reads it: Servers.child_env passes VOCABSYNC_*.
    os.environ["VOCABSYNC_TRIGGER_MODE"] = args.trigger_mode
    ok = False
    hub = ProxyHub()
    servers: Servers | ChaosServers
    if args.fanout:
        servers = Servers()
    else:
        stacks: list[SoakStack] = []
        servers = ChaosServers(hub, lambda: stacks[0].owners() if stacks else {})
        if not servers.standby_possible:
            without_promotion()
            kinds = select(args.kinds)
    try:
        if isinstance(servers, Servers):
            with servers:
                log(f"logs in {servers.log_dir}")
                ok = fanout(args, servers, hub)
        else:
            soak = Soak(args, kinds)
            try:
                with servers:
                    log(f"logs in {servers.log_dir}")
                    stacks.append(SoakStack(servers, hub))
                    try:
                        soak.run(servers, hub, stacks[0])
                    except Exception:
                        soak.error = traceback.format_exc()
                        log(f"the soak stopped on an error:\n{soak.error}")
            except Exception:
                soak.error = soak.error or traceback.format_exc()
                log(f"the soak's servers failed:\n{soak.error}")
            ok = soak.report(time.monotonic() - STARTED)
    finally:
        hub.close()
        if ok and not args.keep_logs:
            shutil.rmtree(servers.log_dir, ignore_errors=True)
        else:
            log(f"logs kept in {servers.log_dir}")
        if not ok:
            log(f"seed {args.seed}; replay: {replay_command(args)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
