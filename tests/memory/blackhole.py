"""A loopback TCP proxy that can turn into a black hole: connections stay open, bytes vanish.

That is what a partitioned or frozen server looks like to a client: nothing is refused, nothing
answers. Tests point a client at the proxy, then switch ``blackholed`` on and off.

It can also lose exactly one reply: :meth:`BlackholeProxy.drop_next_reply` throws away the
server's next bytes to any client (and closes that connection), :meth:`BlackholeProxy.
drop_reply_to` the reply to the next request holding a given command. Either way the server has
done what it was asked and the client sees only a dropped connection. And it can cut one kind
of request only: :attr:`BlackholeProxy.cut_requests_holding` (a script's sha, say) closes the
connection of any request holding those bytes instead of forwarding it, so for that request
Redis is unreachable while everything else goes through.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any


class BlackholeProxy:
    """Forwards 127.0.0.1:``port`` to ``target_port`` until told to swallow everything."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._open = asyncio.Event()
        self._open.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._drop_reply = False
        self._close_on_drop = True
        self.replies_dropped = 0
        self._drop_after: bytes | None = None  # the next request holding this loses its reply
        self.cut_requests_holding: bytes | None = None  # never forwarded: connection closed

    @property
    def blackholed(self) -> bool:
        return not self._open.is_set()

    @blackholed.setter
    def blackholed(self, value: bool) -> None:
        if value:
            self._open.clear()
        else:
            self._open.set()

    def drop_next_reply(self, *, close: bool = True) -> None:
        """Throw away the next reply any server connection sends, and close that connection
        (``close=False``: leave it open, so the client waits for a reply that never comes)."""
        self._drop_reply = True
        self._close_on_drop = close

    def drop_reply_to(self, command: bytes) -> None:
        """Forward the next request that contains ``command``, then close the connection
        instead of passing its reply on (once)."""
        self._drop_after = command

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: asyncio.StreamWriter | None = None,
        marked: list[bool] | None = None,
    ) -> None:
        """Copy ``reader`` to ``writer``; ``upstream`` (given for replies): the server side;
        ``marked``: shared by a connection's two pipes, set when its reply is to be lost."""
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                cut = self.cut_requests_holding
                if upstream is None and cut is not None and cut in data:
                    break  # not forwarded; both sides of the connection close
                after = self._drop_after
                if upstream is None and marked is not None and after is not None and after in data:
                    self._drop_after, marked[0] = None, True
                if upstream is not None and marked is not None and marked[0]:
                    marked[0] = False
                    self.replies_dropped += 1
                    upstream.close()
                    break  # the reply is never passed on: the client sees the connection close
                if upstream is not None and self._drop_reply:
                    self._drop_reply = False
                    self.replies_dropped += 1
                    if not self._close_on_drop:
                        continue
                    upstream.close()
                    break
                if self._open.is_set():
                    writer.write(data)
                    await writer.drain()
        writer.close()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self._spawn(self._serve(reader, writer))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._open.wait()  # a connection made during the black hole is never served
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        marked = [False]
        self._spawn(self._pipe(reader, up_writer, marked=marked))
        self._spawn(self._pipe(up_reader, writer, up_writer, marked))

    @asynccontextmanager
    async def running(self) -> AsyncIterator[BlackholeProxy]:
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for writer in self._writers:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            await server.wait_closed()
