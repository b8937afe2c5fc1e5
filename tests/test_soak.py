"""CI's short chaos soak: bench/soak.py with a fixed seed must end with nothing diverged or lost.

It runs the real stack (two bridges, three instances, proxies on every link, PostgreSQL with a
streaming standby, Redis under Sentinel) under four writers and draws every fault kind at least
once (30 faults, more than there are kinds: the soak draws from a shuffled deck of them),
Sentinel failover and standby promotion included, so a regression in failover, reconnects,
resyncs or the log protocol shows up here as a divergence, a lost change or a dead process, and
``vocabsync status`` must be OK at the end. A failure prints the soak's report, with the seed
and the command that replays it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
FAULTS = 30
SEED = 1
SEED_ARGS = ("--seed", str(SEED))


@pytest.mark.timeout(1500)
def test_short_seeded_soak_ends_with_no_divergence_loss_or_death() -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_", "REDIS_", "SUPABASE_", "VOCABSYNC_"))
    }
    if "VOCABSYNC_LOCAL_SERVERS" in os.environ:
        env["VOCABSYNC_LOCAL_SERVERS"] = os.environ["VOCABSYNC_LOCAL_SERVERS"]
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--faults", str(FAULTS), *SEED_ARGS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1440,
        check=False,
    )
    report = result.stdout
    context = f"{report}\n--- stderr (tail) ---\n{result.stderr[-4000:]}"
    assert result.returncode == 0, context
    assert f"{FAULTS} faults" in report, context
    for figure in (
        "divergences left at the deadline",
        "changes lost",
        "processes that died on their own",
    ):
        match = re.search(rf"{figure}[^:]*: (\d+)", report)
        assert match is not None, f"{figure!r} missing:\n{context}"
        assert match.group(1) == "0", context
    # Every kind was drawn (a shuffled deck of the kinds): each row counts at least one.
    rows = re.findall(r"^\| ([^|*]+?) \| (\d+|-) \|", report, flags=re.MULTILINE)
    counts = {name: count for name, count in rows}
    for kind in ("Redis master kill (Sentinel failover)", "standby promotion", "kill -9 instance"):
        assert kind in counts, context
    drawn = {name: count for name, count in counts.items() if count != "-"}
    assert all(int(count) >= 1 for count in drawn.values()), context
    assert "vocabsync status` at the end: exit 0" in report, context
    counted = re.search(r"\| \*\*all\*\* \| (\d+) faults", report)
    assert counted is not None, context
    assert int(counted.group(1)) == FAULTS, context
