"""Resource counters read from outside the processes: CPU and memory from /proc, and the bytes
Redis sends, through a tiny RESP client that counts every byte it receives itself.

Nothing here talks to the processes under test, so reading a counter does not change it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# --- /proc -------------------------------------------------------------------------------------


def _parent(pid: int) -> int | None:
    """The parent pid of ``pid``; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read().decode(errors="replace")
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1])  # fields[0] is field 3 of proc(5) (state), ppid is field 4


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _parent(int(entry))
            if parent is not None:
                out.setdefault(parent, []).append(int(entry))
    return out


def _tree(pid: int, children: Mapping[int, list[int]]) -> list[int]:
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, ()))
    return out


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass(frozen=True, slots=True)
class Memory:
    rss_mb: float
    peak_mb: float  # VmHWM: the largest RSS so far


def tree_memory(pid: int) -> Memory:
    """Resident memory of ``pid`` and its descendants (VmRSS, and the sum of their VmHWM)."""
    pids = _tree(pid, _children())
    rss = sum(_status_kib(p, "VmRSS") for p in pids)
    peak = sum(_status_kib(p, "VmHWM") for p in pids)
    return Memory(rss / 1024, peak / 1024)


def _thread_ns(pid: int) -> dict[int, int]:
    """Nanoseconds on CPU of each live thread of ``pid`` (schedstat: exact, unlike the
    10 ms clock ticks of /proc/<pid>/stat)."""
    out: dict[int, int] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as handle:
                out[int(tid)] = int(handle.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return out


class CpuWatch:
    """CPU seconds used by named process trees (a process and its descendants, all threads).

    Every thread seen is remembered with its last reading, so a thread or child process that
    exits between two samples still counts up to its last sample (samples are taken every
    few tens of milliseconds while waiting). Descendants are looked up again at most once a
    second.
    """

    RESCAN_S = 1.0

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self._seen: dict[str, dict[int, int]] = {name: {} for name in pids}
        self._trees: dict[str, list[int]] = {}
        self._scanned_at = -self.RESCAN_S

    def sample(self, names: list[str] | None = None, *, rescan: bool = False) -> dict[str, float]:
        """CPU seconds so far per name (all names by default); ``rescan``: find new children."""
        now = time.monotonic()
        if rescan or now - self._scanned_at >= self.RESCAN_S:
            children = _children()
            self._trees = {name: _tree(pid, children) for name, pid in self.pids.items()}
            self._scanned_at = now
        out: dict[str, float] = {}
        for name in names or list(self.pids):
            seen = self._seen[name]
            for pid in self._trees[name]:
                seen.update(_thread_ns(pid))
            out[name] = sum(seen.values()) / 1e9
        return out

    def wait_quiet(
        self,
        names: list[str],
        window_s: float,
        allowance_s: float = 0.0,
        timeout_s: float = 120.0,
        interval_s: float = 0.025,
    ) -> bool:
        """Wait until ``names`` together used at most ``allowance_s`` CPU over ``window_s``.

        Returns False when they were still busy at the deadline (the caller goes on: the figure
        then includes work that was still running, which only makes it larger).
        """
        history: list[tuple[float, float]] = []
        deadline = time.monotonic() + timeout_s
        while True:
            now = time.monotonic()
            history.append((now, sum(self.sample(names).values())))
            while len(history) > 2 and history[1][0] <= now - window_s:
                history.pop(0)
            first_t, first_cpu = history[0]
            if now - first_t >= window_s and history[-1][1] - first_cpu <= allowance_s + 1e-9:
                return True
            if now > deadline:
                return False
            time.sleep(interval_s)


# --- Redis, byte-counted ---------------------------------------------------------------------


class _IncompleteError(Exception):
    pass


def _parse(buf: bytearray, pos: int) -> tuple[Any, int]:
    """One RESP2 reply from ``buf`` at ``pos``: (value, position after it)."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _IncompleteError
    kind, line = bytes(buf[pos : pos + 1]), bytes(buf[pos + 1 : end])
    pos = end + 2
    if kind in (b"+", b"-"):
        return line.decode(errors="replace"), pos
    if kind == b":":
        return int(line), pos
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            raise _IncompleteError
        return bytes(buf[pos : pos + size]), pos + size + 2
    if kind == b"*":
        count = int(line)
        items = []
        for _ in range(max(count, 0)):
            item, pos = _parse(buf, pos)
            items.append(item)
        return items, pos
    raise ValueError(f"unexpected RESP reply type {kind!r}")


class CountingRedis:
    """A minimal Redis client that counts the bytes the server sent it (``received``)."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        self._sock = socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 6379), timeout=timeout_s
        )
        self._buf = bytearray()
        self.received = 0

    def send(self, *args: str) -> None:
        out = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self._sock.sendall(b"".join(out))

    def read(self) -> Any:
        """The next reply; raises TimeoutError (socket timeout) with the buffer kept intact."""
        while True:
            try:
                value, pos = _parse(self._buf, 0)
            except _IncompleteError:
                chunk = self._sock.recv(1 << 20)
                if not chunk:
                    raise ConnectionError("Redis closed the connection") from None
                self.received += len(chunk)
                self._buf += chunk
                continue
            del self._buf[:pos]
            return value

    def set_timeout(self, seconds: float) -> None:
        self._sock.settimeout(seconds)

    def command(self, *args: str) -> Any:
        self.send(*args)
        return self.read()

    def output_bytes(self) -> int:
        """Redis's total_net_output_bytes (not counting this reply, which ``received`` does)."""
        info = self.command("INFO", "stats")
        for line in bytes(info).decode().splitlines():
            if line.startswith("total_net_output_bytes:"):
                return int(line.split(":", 1)[1])
        raise RuntimeError("INFO stats has no total_net_output_bytes")

    def close(self) -> None:
        self._sock.close()


class MessageCounter:
    """Subscribed to every channel (PSUBSCRIBE *); counts messages and the bytes they took.

    Tells the CPU phase that the bridge has published a change, without asking the instances.
    The bytes it receives are Redis output that the system under test did not cause: the caller
    subtracts ``received``.
    """

    def __init__(self, url: str) -> None:
        self._client = CountingRedis(url)
        self._client.command("PSUBSCRIBE", "*")
        self._client.set_timeout(0.2)  # lets the reader thread see close() in time
        self._lock = threading.Condition()
        self.messages = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="message-counter", daemon=True)
        self._thread.start()

    @property
    def received(self) -> int:
        return self._client.received

    def _run(self) -> None:
        while not self._stop:
            try:
                reply = self._client.read()
            except TimeoutError:
                continue
            except OSError:
                return
            if isinstance(reply, list) and reply and reply[0] == b"pmessage":
                with self._lock:
                    self.messages += 1
                    self._lock.notify_all()

    def wait_beyond(self, count: int, timeout_s: float) -> bool:
        """Wait until more than ``count`` messages were seen; False at the deadline."""
        with self._lock:
            return self._lock.wait_for(lambda: self.messages > count, timeout=timeout_s)

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        self._client.close()
