"""TCP proxies for the chaos soak: put one in front of a link, then hold or slow its traffic.

Every process's connection to PostgreSQL or Redis can go through a :class:`Link` (the process is
given the proxy's port in its URL), and the soak changes the link's mode while the process runs:

- ``pass``: bytes flow both ways as they arrive;
- ``blackhole``: nothing is delivered, in either direction, and new connections get no answer:
  what a network partition looks like to both ends. Bytes are *held*, not dropped: TCP
  retransmits what a partition swallowed, so when the partition heals, whatever a peer sent and
  did not give up on arrives, in order (dropping bytes from a live stream is not something a
  network can do to TCP: it would desynchronise any protocol and test nothing real);
- ``delay``: every chunk is delivered ``delay`` seconds after it was read, in order (a slow link:
  each round trip costs twice the delay).

A connection that either side closes is closed on the other side once everything before the
close was delivered (the FIN is held and delayed like the data). All links live on one event
loop in a daemon thread of the soak; the methods are called from any thread.

A link is either one process's own (its URL names the proxy: the mode applies to every
connection), or *shared* by every process, with a mode per *owner*. A shared link finds out which
process opened each connection (the client socket's inode in ``/proc/net/tcp``, then which of
the known processes holds it) and applies that owner's mode: this is how a link can be faulted
for one process when the address it connects to is handed out by someone else (Redis Sentinel
names the master; every client must get the same address). Connections of unknown processes
(Sentinels, replication) always pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

Mode = Literal["pass", "blackhole", "delay"]
_T = TypeVar("_T")

CHUNK = 65536
CONNECT_TIMEOUT_S = 5.0
CONTROL_TIMEOUT_S = 10.0

OwnerLookup = Callable[[], Mapping[int, str]]
"""pid -> name of the processes a shared link can tell apart."""


@dataclass
class Flow:
    """The mode of a link for one owner (or for every connection of a process's own link)."""

    mode: Mode = "pass"
    delay_s: float = 0.0
    flowing: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.flowing.set()

    def set(self, mode: Mode, delay_s: float) -> None:
        self.mode = mode
        self.delay_s = delay_s if mode == "delay" else 0.0
        if mode == "blackhole":
            self.flowing.clear()
        else:
            self.flowing.set()


def _hex_address(port: int) -> str:
    """127.0.0.1:port as /proc/net/tcp writes it (little-endian address, hex port)."""
    return f"0100007F:{port:04X}"


def socket_owner(client_port: int, server_port: int, owners: Mapping[int, str]) -> str | None:
    """The name of the process (of ``owners``) holding the client end of the loopback
    connection 127.0.0.1:client_port -> 127.0.0.1:server_port; None when it is none of them."""
    local, remote = _hex_address(client_port), _hex_address(server_port)
    inode = None
    try:
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[1] == local and fields[2] == remote:
                inode = fields[9]
                break
    except OSError:
        return None
    if inode is None or inode == "0":
        return None
    target = f"socket:[{inode}]"
    for pid, name in owners.items():
        fd_dir = f"/proc/{pid}/fd"
        try:
            descriptors = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in descriptors:
            with contextlib.suppress(OSError):
                if os.readlink(f"{fd_dir}/{fd}") == target:
                    return name
    return None


class Link:
    """One proxy: listens on 127.0.0.1:``port`` and forwards to ``target_port``.

    With ``owners`` it is shared: each connection gets the mode of the process that opened it.
    """

    def __init__(
        self,
        name: str,
        target_host: str,
        target_port: int,
        owners: OwnerLookup | None = None,
        port: int = 0,
    ) -> None:
        self.name = name
        self.target_host = target_host
        self.target_port = target_port
        self.port = port
        self.owners = owners
        self.connections = 0
        self.by_owner: dict[str | None, int] = {}
        self._flows: dict[str | None, Flow] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port or 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def flow(self, owner: str | None = None) -> Flow:
        if owner not in self._flows:
            self._flows[owner] = Flow()
        return self._flows[owner]

    @property
    def mode(self) -> Mode:
        return self.flow().mode

    def set_mode(self, mode: Mode, delay_s: float = 0.0, owner: str | None = None) -> None:
        self.flow(owner).set(mode, delay_s)

    def _owner(self, writer: asyncio.StreamWriter) -> str | None:
        if self.owners is None:
            return None
        peer = writer.get_extra_info("peername")
        if not peer:
            return None
        return socket_owner(int(peer[1]), self.port, self.owners())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        owner = self._owner(writer)
        self.by_owner[owner] = self.by_owner.get(owner, 0) + 1
        flow = self.flow(owner)
        # A partition: the client's connection is accepted (by this kernel) but nothing reaches
        # the server until the link is back; the client's own timeouts decide what happens.
        await flow.flowing.wait()
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self.target_host, self.target_port), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            writer.close()
            self._writers.discard(writer)
            return
        self.connections += 1
        self._writers.add(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()
            self._spawn(self._read(source, queue))
            self._spawn(self._deliver(queue, sink, flow))

    async def _read(
        self, source: asyncio.StreamReader, queue: asyncio.Queue[tuple[float, bytes | None]]
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await source.read(CHUNK):
                queue.put_nowait((loop.time(), data))
        except OSError:
            pass
        finally:
            queue.put_nowait((loop.time(), None))  # the close, delivered after the data

    async def _deliver(
        self,
        queue: asyncio.Queue[tuple[float, bytes | None]],
        sink: asyncio.StreamWriter,
        flow: Flow,
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                read_at, data = await queue.get()
                while True:  # the mode may change while this chunk waits
                    await flow.flowing.wait()
                    due = read_at + flow.delay_s
                    if due <= loop.time():
                        break
                    await asyncio.sleep(due - loop.time())
                    if flow.flowing.is_set():
                        break
                if data is None:
                    break
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.close()
            self._writers.discard(sink)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), CONTROL_TIMEOUT_S)


class ProxyHub:
    """Owns the event loop thread every :class:`Link` runs on."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="soak-proxies")
        self._thread.daemon = True
        self._thread.start()
        self.links: dict[str, Link] = {}

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CONTROL_TIMEOUT_S)

    def add(
        self,
        name: str,
        target_host: str,
        target_port: int,
        owners: OwnerLookup | None = None,
        port: int = 0,
    ) -> Link:
        """A new link listening on ``port`` (default: a free one; ``link.port``); shared, with
        a mode per owner, when ``owners`` is given."""

        async def start() -> Link:
            link = Link(name, target_host, target_port, owners, port)
            await link.start()
            return link

        link = self._call(start())
        self.links[name] = link
        return link

    def set_mode(
        self, name: str, mode: Mode, delay_s: float = 0.0, owner: str | None = None
    ) -> None:
        link = self.links[name]

        async def change() -> None:
            link.set_mode(mode, delay_s, owner)

        self._call(change())

    def blackhole(self, name: str, owner: str | None = None) -> None:
        self.set_mode(name, "blackhole", owner=owner)

    def delay(self, name: str, delay_s: float, owner: str | None = None) -> None:
        self.set_mode(name, "delay", delay_s, owner)

    def restore(self, name: str, owner: str | None = None) -> None:
        self.set_mode(name, "pass", owner=owner)

    def close(self) -> None:
        if not self._thread.is_alive():
            return

        async def close_all() -> None:
            for link in self.links.values():
                await link.close()

        with contextlib.suppress(Exception):
            self._call(close_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CONTROL_TIMEOUT_S)
        if not self._thread.is_alive():
            self._loop.close()
