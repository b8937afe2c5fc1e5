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
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

Mode = Literal["pass", "blackhole", "delay"]
_T = TypeVar("_T")

CHUNK = 65536
CONNECT_TIMEOUT_S = 5.0
CONTROL_TIMEOUT_S = 10.0


class Link:
    """One proxy: listens on 127.0.0.1:``port`` and forwards to ``target_port``."""

    def __init__(self, name: str, target_host: str, target_port: int) -> None:
        self.name = name
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.mode: Mode = "pass"
        self.delay_s = 0.0
        self.connections = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port or 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def set_mode(self, mode: Mode, delay_s: float = 0.0) -> None:
        self.mode = mode
        self.delay_s = delay_s if mode == "delay" else 0.0
        if mode == "blackhole":
            self._flowing.clear()
        else:
            self._flowing.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        # A partition: the client's connection is accepted (by this kernel) but nothing reaches
        # the server until the link is back; the client's own timeouts decide what happens.
        await self._flowing.wait()
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
            self._spawn(self._deliver(queue, sink))

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
        self, queue: asyncio.Queue[tuple[float, bytes | None]], sink: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                read_at, data = await queue.get()
                while True:  # the mode may change while this chunk waits
                    await self._flowing.wait()
                    due = read_at + self.delay_s
                    if due <= loop.time():
                        break
                    await asyncio.sleep(due - loop.time())
                    if self._flowing.is_set():
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

    def add(self, name: str, target_host: str, target_port: int) -> Link:
        """A new link listening on a free port (``link.port``)."""

        async def start() -> Link:
            link = Link(name, target_host, target_port)
            await link.start()
            return link

        link = self._call(start())
        self.links[name] = link
        return link

    def set_mode(self, name: str, mode: Mode, delay_s: float = 0.0) -> None:
        link = self.links[name]

        async def change() -> None:
            link.set_mode(mode, delay_s)

        self._call(change())

    def blackhole(self, name: str) -> None:
        self.set_mode(name, "blackhole")

    def delay(self, name: str, delay_s: float) -> None:
        self.set_mode(name, "delay", delay_s)

    def restore(self, name: str) -> None:
        self.set_mode(name, "pass")

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
