"""``vocabsync status``: the one command an operator runs when paged.

It answers, from the outside: is the database reachable and are the triggers installed; which
bridge is active and when it last reported; does the snapshot in Redis equal what the database
holds now; and which API instances serve which snapshot. All is well (exit 0) only when every
check passes.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from redis.exceptions import RedisError

from vocabsync.config import Settings
from vocabsync.db.migrate import check as check_triggers
from vocabsync.errors import VocabSyncError
from vocabsync.services.heartbeat import read_heartbeats, stale_after
from vocabsync.services.redis_client import describe_redis_error, redis_client
from vocabsync.services.vocabulary_loader import VocabularyLoader
from vocabsync.services.vocabulary_log import VocabularyLog
from vocabsync.vocabulary import Snapshot, SnapshotFormatError

Level = Literal["ok", "warn", "fail"]
SETTLE_SECONDS = 3.0
"""How long a difference between Redis and the database may last before it counts (a change
that is being propagated right now is not a failure)."""


@dataclass
class Check:
    name: str
    level: Level
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class StatusReport:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(check.level != "fail" for check in self.checks)

    def to_json(self) -> str:
        return json.dumps(
            {"ok": self.ok, "checks": [asdict(check) for check in self.checks]},
            indent=2,
            default=str,
        )

    def to_table(self) -> str:
        width = max(len(check.name) for check in self.checks)
        lines = [f"{'CHECK':<{width}}  STATE  SUMMARY"]
        for check in self.checks:
            lines.append(f"{check.name:<{width}}  {check.level.upper():<5}  {check.summary}")
            for key, value in check.details.items():
                if key != "items":
                    continue
                for item in value:
                    lines.append(f"{'':<{width}}         - {item}")
        lines.append("")
        lines.append("all is well" if self.ok else "PROBLEMS FOUND (see FAIL lines)")
        return "\n".join(lines)


async def collect_status(settings: Settings) -> StatusReport:
    database = await _database_check(settings)
    client = redis_client(settings)
    try:
        try:
            async with asyncio.timeout(settings.network_timeout):
                await client.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            reason = describe_redis_error(settings, exc)
            return StatusReport(
                [
                    database,
                    Check("redis", "fail", f"unreachable at {settings.redis_display}: {reason}"),
                ]
            )
        bridges = await _bridge_check(settings, client)
        snapshot_check, stored = await _snapshot_check(settings, client)
        instances = await _instance_check(settings, client, stored)
        return StatusReport([database, bridges, snapshot_check, instances])
    finally:
        await client.aclose()


async def _database_check(settings: Settings) -> Check:
    try:
        result = await check_triggers(settings)
    except VocabSyncError as exc:
        return Check("database", "fail", settings.redact(str(exc)))
    if result.ok:
        return Check(
            "database", "ok", f"reachable, triggers installed ({settings.postgres_display})"
        )
    return Check(
        "database",
        "fail",
        "triggers missing or wrong: run `vocabsync migrate`",
        {"items": list(result.problems)},
    )


async def _bridge_check(settings: Settings, client: Any) -> Check:
    bridges = await read_heartbeats(client, settings, "bridge")
    now = time.time()
    limit = stale_after(settings)
    items = [
        f"{b.get('id')}: {b.get('role')}, heartbeat {now - float(b.get('heartbeat_at', 0)):.1f} s "
        f"ago, version {b.get('version')}"
        f"{' STALE (hung or dead)' if _age(b, now) > limit else ''}"
        for b in bridges
    ]
    active = [b for b in bridges if b.get("role") == "active" and _age(b, now) <= limit]
    details = {"items": items, "bridges": bridges, "stale_after_seconds": limit}
    if not active:
        summary = "no active bridge" + (" (only standbys)" if bridges else " (none running)")
        return Check("bridge", "fail", summary, details)
    if len(active) > 1:
        return Check("bridge", "fail", f"{len(active)} bridges claim to be active", details)
    standby = len(bridges) - 1
    return Check("bridge", "ok", f"active: {active[0].get('id')} (+{standby} standby)", details)


async def _snapshot_check(settings: Settings, client: Any) -> tuple[Check, Snapshot | None]:
    log = VocabularyLog(client, settings)
    deadline = time.monotonic() + SETTLE_SECONDS
    async with VocabularyLoader(settings, purpose="status") as loader:
        while True:
            try:
                found = await log.read_full()
                problem = None if found is not None else "missing"
            except SnapshotFormatError as exc:
                found, problem = None, f"corrupted: {exc}"
            stored = found[1] if found is not None else None
            written = found[0].fields if found is not None else None
            try:
                current = await loader.load()
            except VocabSyncError as exc:
                return Check("snapshot", "fail", settings.redact(str(exc))), stored
            if stored is None:
                summary = f"the vocabulary state in Redis ({log.head_key}) is {problem}"
                level: Level = "fail"
                differing: list[str] = list(current.fields)
            else:
                differing = [name for name in current.fields if stored[name] != current[name]]
                level = "fail" if differing else "ok"
                summary = (
                    f"version {stored.version} equals the database"
                    if not differing
                    else f"version {stored.version} differs from the database in "
                    f"{', '.join(differing)}"
                )
            if written is not None and written != log.fields:
                level = "fail"
                summary = (
                    f"the bridge writes the fields {', '.join(written)}, this configuration has "
                    f"{', '.join(log.fields)}: give every process the same VOCABSYNC_SOURCES"
                )
            if level == "ok" or time.monotonic() >= deadline:
                details = {"differing": differing, "items": _field_lines(settings, stored)}
                return Check("snapshot", level, summary, details), stored
            await asyncio.sleep(0.25)


async def _instance_check(settings: Settings, client: Any, stored: Snapshot | None) -> Check:
    target = stored.version if stored is not None else None
    # Instances report every health-check interval: give a lagging report time to catch up.
    deadline = time.monotonic() + settings.health_check_interval + SETTLE_SECONDS
    limit = stale_after(settings)
    while True:
        instances = await read_heartbeats(client, settings, "instance")
        now = time.time()
        stale = [i for i in instances if _age(i, now) > limit]
        behind = [
            i
            for i in instances
            if i not in stale and target is not None and int(i.get("version", 0)) < target
        ]
        if not (behind or stale) or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.25)
    if not instances:
        return Check("instances", "warn", "no API instance is reporting")
    fallback = [i for i in instances if i.get("fallback")]
    items = [
        f"{i.get('id')}: version {i.get('version')}, snapshot age "
        f"{now - float(i.get('refreshed_at') or now):.1f} s"
        f"{', FALLBACK (cannot hear Redis)' if i.get('fallback') else ''}"
        f"{', BEHIND' if i in behind else ''}"
        f"{f', STALE: no heartbeat for {_age(i, now):.0f} s' if i in stale else ''}"
        for i in instances
    ]
    details = {"items": items, "instances": instances}
    if behind or fallback or stale:
        return Check(
            "instances",
            "fail",
            f"{len(behind)} behind, {len(fallback)} in fallback, {len(stale)} not reporting, "
            f"of {len(instances)}",
            details,
        )
    return Check("instances", "ok", f"{len(instances)} serving version {target}", details)


def _field_lines(settings: Settings, stored: Snapshot | None) -> list[str]:
    """One line per configured field: where it comes from and how many terms Redis holds."""
    added = settings.sources.added
    return [
        f"{name} ({source}{', added by VOCABSYNC_SOURCES' if name in added else ''}): "
        f"{'-' if stored is None else len(stored[name])} terms"
        for name, source in settings.sources.sources.items()
    ]


def _age(heartbeat: dict[str, Any], now: float) -> float:
    try:
        return now - float(heartbeat.get("heartbeat_at", 0))
    except (TypeError, ValueError):
        return float("inf")
