"""A loopback TCP relay between one workload process and a server, that chaos controls.

Each workload process reaches Redis and PostgreSQL through relays of its own, run by the chaos
driver in its event loop, so a fault can hit one process's network and nobody else's:

- :meth:`Relay.partition` for ``seconds``: nothing moves in either direction, and new
  connections are accepted but not joined to the server until it ends. Bytes already sent stay
  in the kernel's buffers and arrive after the partition (as TCP retransmits through a real
  one), unless a side gave up and closed first; a request the client timed out on may so still
  reach the server later, which is why its outcome is recorded as unknown (``info``).
- :meth:`Relay.drop_next_reply`: the next chunk the server sends on any connection of this
  relay is thrown away and that connection is cut, as when a connection dies after the server
  did the work and before the client heard. The client then sees a dropped connection (and
  redis-py retries the command once, on a new one).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import anyio


class Relay:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target_port``, with faults on demand."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.dropped = 0  # replies thrown away
        self._open = asyncio.Event()
        self._open.set()
        self._drop = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def partition(self, seconds: float) -> None:
        """Cut the process off from the server for ``seconds``, then heal."""
        self._open.clear()
        try:
            await anyio.sleep(seconds)
        finally:
            self._open.set()

    def drop_next_reply(self) -> None:
        """Throw away the next reply from the server and cut its connection."""
        self._drop = True

    def cancel_drop(self) -> None:
        self._drop = False

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, replies: bool
    ) -> None:
        with contextlib.suppress(OSError):
            while True:
                await self._open.wait()
                data = await reader.read(65536)
                if not data:
                    break
                await self._open.wait()  # read before a partition began: held until it ends
                if replies and self._drop:
                    self._drop = False
                    self.dropped += 1
                    break
                writer.write(data)
                await writer.drain()
        writer.close()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self._spawn(self._serve(reader, writer))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._open.wait()  # a connection made during a partition waits for its end
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        self._spawn(self._pipe(reader, up_writer, replies=False))
        self._spawn(self._pipe(up_reader, writer, replies=True))

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Relay]:
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            self._open.set()
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for writer in self._writers:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            await server.wait_closed()
