"""The quick-start path a laptop takes: `vocabsync demo --once` on the pip-installed servers."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from vocabsync.config import Settings
from vocabsync.errors import VocabSyncError
from vocabsync.local import servers
from vocabsync.local.demo import run_demo
from vocabsync.local.processes import cli_argv


@pytest.mark.slow
def test_demo_once_on_embedded_servers_reaches_both_instances() -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "SUPABASE_HOST", "REDIS_HOST"}
    }
    env["VOCABSYNC_LOCAL_SERVERS"] = "embedded"  # what a machine without server binaries runs
    result = subprocess.run(
        cli_argv("demo", "--once"),
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "PostgreSQL (embedded)" in output
    assert "Redis (embedded)" in output
    assert "'projects': 1000" in output
    timings = re.findall(r"^\s+(.+?)\s+([\d.]+) ms$", result.stdout, flags=re.MULTILINE)
    assert [title for title, _ in timings] == [
        "add a project",
        "rename it",
        "add an expense category",
        "add a cash-flow file",
        "delete the project",
    ]
    assert all(float(ms) < 5000 for _, ms in timings)


def test_demo_without_server_binaries_or_the_local_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A laptop with neither PostgreSQL/Redis installed nor the [local] extra."""
    monkeypatch.setattr(servers, "find_system_postgres_bin_dir", lambda: None)
    monkeypatch.setattr(servers, "find_system_redis_server", lambda: None)
    monkeypatch.setattr(servers, "_package_dir", lambda name: None)
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "SUPABASE_HOST",
        "REDIS_HOST",
        servers.FLAVOR_ENV_VAR,
    ):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    with pytest.raises(VocabSyncError, match=re.escape("pip install 'vocabsync[local]'")):
        run_demo(settings, once=True)
