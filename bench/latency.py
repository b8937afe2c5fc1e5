"""Commit -> served latency of the whole pipeline, with real processes on local servers.

Starts private PostgreSQL and Redis (or uses DATABASE_URL / REDIS_URL), migrates, seeds the demo
vocabulary (1,000 projects, 500 categories, 200 files), runs one bridge and two API instances as
child processes, then commits N single-row changes one at a time. For each change it measures the
time from the commit returning until *both* instances serve it: it polls each instance's cheap
/ready (snapshot version) and confirms the change in GET /api/vocabulary once the version moved.
Prints p50/p95/p99/max and the number of database loads per change (bridge + instances).

    .venv/bin/python bench/latency.py [--changes 500]     (after scripts/test or scripts/demo)
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from typing import Any

from vocabsync.config import Settings
from vocabsync.local.demo import DemoStack
from vocabsync.local.demo_data import demo_vocabulary
from vocabsync.local.processes import http_json

POLL_INTERVAL_S = 0.0005
TIMEOUT_S = 10.0


def instance_version(url: str) -> int:
    status, body = http_json(f"{url}/ready", timeout=2.0)
    return int(body["version"]) if status == 200 else -1


def instance_loads(url: str) -> int:
    _, body = http_json(f"{url}/ready", timeout=2.0)
    return int(body["database_loads"])


def serves(url: str, field: str, term: str, present: bool) -> bool:
    status, body = http_json(f"{url}/api/vocabulary", timeout=2.0)
    return status == 200 and (term in body[field]) == present


def wait_served(
    urls: list[str], versions: dict[str, int], field: str, term: str, present: bool
) -> float:
    """Seconds from now until every instance serves the change; updates ``versions``."""
    started = time.perf_counter()
    pending = list(urls)
    seen_at: dict[str, float] = {}
    while pending:
        for url in list(pending):
            version = instance_version(url)
            if version > versions[url] and serves(url, field, term, present):
                versions[url] = version
                seen_at[url] = time.perf_counter()
                pending.remove(url)
        if time.perf_counter() - started > TIMEOUT_S:
            raise TimeoutError(f"{pending} did not serve {field}={term!r} within {TIMEOUT_S} s")
        time.sleep(POLL_INTERVAL_S)
    return max(seen_at.values()) - started


def change_plan(index: int) -> tuple[str, tuple[Any, ...], str, str, bool]:
    """Cycle through insert / rename / delete of projects and categories."""
    name = f"Bench Project {index // 3:04d}"
    step = index % 3
    if step == 0:
        return ('INSERT INTO "Project"(project_name) VALUES (%s)', (name,), "projects", name, True)
    if step == 1:
        return (
            'UPDATE "Project" SET project_name = %s WHERE project_name = %s',
            (name + " (renamed)", name),
            "projects",
            name + " (renamed)",
            True,
        )
    return (
        'DELETE FROM "Project" WHERE project_name = %s',
        (name + " (renamed)",),
        "projects",
        name + " (renamed)",
        False,
    )


def percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=500)
    args = parser.parse_args()
    settings = Settings()
    with DemoStack(settings, seed_vocabulary=demo_vocabulary()) as stack:
        urls = stack.instance_urls
        versions = {url: instance_version(url) for url in urls}
        loads_before = sum(instance_loads(url) for url in urls)
        published_before = _bridge_loads(stack)
        latencies: list[float] = []
        for index in range(args.changes):
            statement, params, field, term, present = change_plan(index)
            stack.execute(statement, params)
            latencies.append(wait_served(urls, versions, field, term, present))
        instance_db_loads = sum(instance_loads(url) for url in urls) - loads_before
        bridge_db_loads = _bridge_loads(stack) - published_before
    ordered = sorted(latencies)
    ms = [v * 1000 for v in ordered]
    print(f"changes: {len(ms)} single-row commits, one at a time; 2 API instances, 1 bridge")
    print(
        "commit -> both instances serving (ms): "
        f"p50 {percentile(ms, 0.50):.1f}  p95 {percentile(ms, 0.95):.1f}  "
        f"p99 {percentile(ms, 0.99):.1f}  max {ms[-1]:.1f}  mean {statistics.mean(ms):.1f}"
    )
    print(
        f"database loads per change: {(bridge_db_loads + instance_db_loads) / len(ms):.2f} "
        f"(bridge {bridge_db_loads}, instances {instance_db_loads})"
    )
    goal = percentile(ms, 0.99) < 50
    print(f"goal p99 < 50 ms: {'met' if goal else 'NOT met'}")
    return 0


def _bridge_loads(stack: DemoStack) -> int:
    assert stack.bridge is not None
    text = stack.bridge.log_path.read_text(errors="replace")
    return len(re.findall(r"\[published\]", text))


if __name__ == "__main__":
    sys.exit(main())
