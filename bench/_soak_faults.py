"""The soak's fault kinds: each one injects a fault, lets it last, and heals it.

A kind is a name and a function ``inject(chaos) -> detail`` that returns once the fault is over
(the killed process restarted, the link restored, the server back, the replica or standby
promoted): the soak times convergence from that moment. What only restores redundancy (a killed
bridge restarted, a new PostgreSQL standby, the Sentinels seeing the restarted Redis node as a
healthy replica) goes to ``Chaos.after_check`` and runs after the convergence check. Kinds
that need infrastructure this build does not have are listed with the reason and never drawn,
so the report says what was not tested instead of pretending.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from _proxy import ProxyHub
from _soak_servers import ChaosServers
from _soak_stack import Database, Member, SoakStack
from _soak_writers import Writers

STOP_SECONDS = 5.0
BLACKHOLE_SECONDS = 10.0
DELAY_SECONDS = 10.0
DELAY_S = 0.2
ACTIVE_BRIDGE_WAIT_S = 30.0
TERMINATE_SQL = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE application_name LIKE 'vocabsync%%' AND pid <> pg_backend_pid()"
)


@dataclass
class Chaos:
    """What a fault can act on, and the soak's seeded randomness."""

    stack: SoakStack
    servers: ChaosServers
    hub: ProxyHub
    rng: random.Random
    writers: Writers | None = None
    db: Database | None = None
    discarded: list[str] = field(default_factory=list)
    """Changes the old primary acknowledged that a promotion lost (ledger rows it reverted)."""
    anomalies: list[str] = field(default_factory=list)
    """Things that are wrong but are not divergences (no active bridge, two active)."""
    after_check: list[Callable[[], None]] = field(default_factory=list)
    """What the soak does once the convergence check is over (restart a killed bridge)."""

    def active_bridge(self) -> Member:
        """The bridge holding leadership (exactly one must, soon after any fault)."""
        deadline = time.monotonic() + ACTIVE_BRIDGE_WAIT_S
        while True:
            active = self.stack.active_bridges()
            if len(active) == 1:
                return active[0]
            if time.monotonic() > deadline:
                names = [m.name for m in active]
                self.anomalies.append(
                    f"{len(active)} active bridges ({names}) for {ACTIVE_BRIDGE_WAIT_S:g} s"
                )
                return active[0] if active else self.rng.choice(self.stack.bridges)
            time.sleep(0.1)

    def standby_bridge(self) -> Member:
        active = self.active_bridge()
        others = [m for m in self.stack.bridges if m is not active]
        return self.rng.choice(others)

    def instance(self) -> Member:
        return self.rng.choice(self.stack.instances)

    def pause(self, seconds: float) -> None:
        """The fault's duration: writers keep writing meanwhile."""
        time.sleep(seconds)

    def kill_and_restart(self, member: Member) -> str:
        """kill -9; an instance is restarted at once (its supervisor's restart delay), a bridge
        only after the check: convergence must not wait for the killed bridge to come back,
        the standby has to take over (and be able to)."""
        member.expected_down = True
        member.process.kill()
        if member.kind == "bridge":
            self.after_check.append(lambda: self.stack.restart(member))
            return member.name
        self.pause(self.rng.uniform(0.1, 1.0))
        self.stack.restart(member)
        return member.name

    def stop_and_continue(self, member: Member) -> str:
        member.expected_down = True
        os.kill(member.process.pid, signal.SIGSTOP)
        try:
            self.pause(STOP_SECONDS)
        finally:
            os.kill(member.process.pid, signal.SIGCONT)
            member.expected_down = False
        return member.name

    def disturb_link(self, member: Member, link: str, delay_s: float | None) -> str:
        """Blackhole or slow every proxy of ``member``'s ``link`` (both PostgreSQL addresses;
        both Redis nodes and the Sentinels), for this member only."""
        proxies = member.links[link]
        try:
            for name, owner in proxies:
                if delay_s is None:
                    self.hub.blackhole(name, owner)
                else:
                    self.hub.delay(name, delay_s, owner)
            self.pause(BLACKHOLE_SECONDS if delay_s is None else DELAY_SECONDS)
        finally:
            for name, owner in proxies:
                self.hub.restore(name, owner)
        seen = sum(self.hub.links[name].by_owner.get(owner, 0) for name, owner in proxies)
        if not seen:  # a shared proxy never told this member's connections apart
            self.anomalies.append(f"no connection of {member.name} on its {link} proxies")
        return f"{member.name}'s {link} link ({seen} connections so far)"


def terminate_sessions(chaos: Chaos) -> str:
    with psycopg.connect(chaos.servers.database_url, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute(TERMINATE_SQL).fetchone()
    return f"{row[0] if row else 0} sessions"


def restart_redis(chaos: Chaos) -> str:
    return chaos.servers.restart_redis()


def fail_over_redis(chaos: Chaos) -> str:
    """kill -9 of the master, Sentinel failover; the old master is back (empty) as a replica,
    and after the check the Sentinels must know it healthy again (the next kill needs it)."""
    detail = chaos.servers.fail_over_redis()
    chaos.after_check.append(chaos.servers.wait_sentinels_ready)
    return detail


def restart_postgres(chaos: Chaos) -> str:
    chaos.servers.restart_postgres()
    return "fast"


def promote_standby(chaos: Chaos) -> str:
    """kill -9 of the primary, promotion of the standby. Commits the old primary acknowledged
    but never shipped are gone: with writes paused, the writers' ledger is set to what the new
    primary holds (those changes are counted as discarded, not lost: they must disappear from
    every instance). A new standby is made from the new primary after the check."""
    detail = chaos.servers.promote_standby()
    if chaos.writers is not None and chaos.db is not None:
        if not chaos.writers.pause():
            raise RuntimeError("writers did not pause within 60 s")
        try:
            chaos.discarded += chaos.db.run(chaos.writers.ledger.reconcile)
        finally:
            chaos.writers.resume()
    chaos.after_check.append(chaos.servers.make_standby)
    return detail


@dataclass(frozen=True, slots=True)
class FaultKind:
    name: str
    inject: Callable[[Chaos], str] | None
    unavailable: str | None = None
    """Why this build cannot inject it (then ``inject`` is None)."""

    @property
    def available(self) -> bool:
        return self.inject is not None


def _link_faults() -> list[FaultKind]:
    kinds = []
    for label, delay_s in (("blackhole 10 s", None), ("delay 200 ms", DELAY_S)):
        kinds += [
            FaultKind(
                f"{label}: bridge↔PostgreSQL",
                lambda c, d=delay_s: c.disturb_link(c.active_bridge(), "postgres", d),
            ),
            FaultKind(
                f"{label}: bridge↔Redis",
                lambda c, d=delay_s: c.disturb_link(c.active_bridge(), "redis", d),
            ),
            FaultKind(
                f"{label}: instance↔Redis",
                lambda c, d=delay_s: c.disturb_link(c.instance(), "redis", d),
            ),
        ]
    return kinds


KINDS: list[FaultKind] = [
    FaultKind("kill -9 active bridge", lambda c: c.kill_and_restart(c.active_bridge())),
    FaultKind("kill -9 standby bridge", lambda c: c.kill_and_restart(c.standby_bridge())),
    FaultKind("kill -9 instance", lambda c: c.kill_and_restart(c.instance())),
    FaultKind("SIGSTOP instance 5 s", lambda c: c.stop_and_continue(c.instance())),
    FaultKind("SIGSTOP active bridge 5 s", lambda c: c.stop_and_continue(c.active_bridge())),
    FaultKind("Redis master kill (Sentinel failover)", fail_over_redis),
    FaultKind("Redis restart (empty)", restart_redis),
    FaultKind("pg_terminate_backend of vocabsync sessions", terminate_sessions),
    FaultKind("PostgreSQL fast restart", restart_postgres),
    FaultKind("standby promotion", promote_standby),
    *_link_faults(),
]


NO_STANDBY = "not available: pg_basebackup is not beside these PostgreSQL binaries"


def without_promotion() -> None:
    """Mark standby promotion unavailable (the servers cannot make a standby)."""
    for index, kind in enumerate(KINDS):
        if kind.name == "standby promotion":
            KINDS[index] = FaultKind(kind.name, None, NO_STANDBY)


def select(names: str | None) -> list[FaultKind]:
    """The kinds to draw from: all available ones, or those whose names contain a pattern
    of the comma-separated list (``--kinds 'kill -9,Redis restart'``)."""
    if not names:
        return [k for k in KINDS if k.available]
    patterns = [p.strip().lower() for p in names.split(",") if p.strip()]
    chosen = [k for k in KINDS if k.available and any(p in k.name.lower() for p in patterns)]
    if not chosen:
        raise SystemExit(f"--kinds {names!r} matches no available fault kind")
    return chosen
