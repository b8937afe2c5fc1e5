"""Child processes of the demo, the benchmarks and the tests: bridge and API instances.

Each child runs in its own process group, is stopped with SIGTERM (then SIGKILL after a grace
period), and its output goes to a log file so a failure can show what the child said.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vocabsync.errors import VocabSyncError


class ProcessError(VocabSyncError):
    """A child process exited or did not become ready; the message holds its last log lines."""


class ManagedProcess:
    """One child process with a log file; start, wait for readiness, stop, or kill -9."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_dir: Path,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not started"
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> ManagedProcess:
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        return self

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        if not self.alive:
            code = None if self.process is None else self.process.returncode
            raise ProcessError(f"{self.name} exited with {code}:\n{self.log_tail()}")

    def terminate(self, grace: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL the whole group."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reap_group()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the process group (a crash, as ``kill -9`` does it)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def _reap_group(self) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


def python_module_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def cli_argv(*args: str) -> list[str]:
    """``vocabsync ARGS`` run with this interpreter (works before the script is on PATH)."""
    return [sys.executable, "-m", "vocabsync.cli", *args]


def http_json(url: str, *, method: str = "GET", timeout: float = 5.0) -> tuple[int, Any]:
    """A tiny stdlib HTTP client (the demo must not need test dependencies)."""
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, body.decode(errors="replace")


def wait_http_ready(process: ManagedProcess, url: str, deadline_s: float = 30.0) -> None:
    """Poll ``url`` until it answers 200; fail early with the log if the process exits."""
    deadline = time.monotonic() + deadline_s
    last: object = None
    while time.monotonic() < deadline:
        process.check_alive()
        try:
            status, body = http_json(url, timeout=1.0)
            if status == 200:
                return
            last = body
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    raise ProcessError(
        f"{process.name} not ready at {url} after {deadline_s:g} s ({last}):\n{process.log_tail()}"
    )
