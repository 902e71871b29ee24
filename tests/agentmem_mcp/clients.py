"""MCP clients for the tests: the official SDK's, over stdio (``agentmem mcp``) or streamable
HTTP (``/mcp`` on ``agentmem serve``), each against a server in a process of its own."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from tests.orchestrator.runs import ROOT


class ToolError(Exception):
    """A tool call answered with ``isError``: the text is the server's message."""


class Tools:
    """One MCP client session: ``await tools.call("facts_store", namespace=..., ...)``."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session

    async def call(self, name: str, **arguments: Any) -> dict[str, Any]:
        """The tool's structured result; :class:`ToolError` when it answered with an error."""
        result: CallToolResult = await self.session.call_tool(name, arguments)
        if result.is_error:
            text = " ".join(c.text for c in result.content if isinstance(c, TextContent))
            raise ToolError(text)
        structured: dict[str, Any] | None = result.structured_content
        assert structured is not None
        return structured


@asynccontextmanager
async def stdio_tools(env: dict[str, str], *args: str) -> AsyncIterator[Tools]:
    """``agentmem mcp`` in a process of its own, and a session with it."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "agentmem.cli.main", "mcp", *args],
        env=env,
        cwd=ROOT,
    )
    with tempfile.TemporaryFile("w+") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield Tools(session)


@asynccontextmanager
async def http_tools(url: str) -> AsyncIterator[Tools]:
    """A session with the streamable-HTTP endpoint at ``url`` (no Origin header, like any
    MCP client that is not a browser)."""
    async with (
        streamable_http_client(url) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield Tools(session)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve_process(env: dict[str, str]) -> Iterator[str]:
    """``agentmem serve`` in a process of its own; yields its MCP endpoint's URL."""
    port = free_port()
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "agentmem.cli.main", "serve", "--port", str(port)],
            stdout=log,
            stderr=log,
            env=env,
            cwd=ROOT,
        )
        try:
            _wait_until_serving(process, f"http://127.0.0.1:{port}/", log)
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            process.terminate()
            process.wait(timeout=30)


def _wait_until_serving(process: subprocess.Popen[bytes], url: str, log: Any) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                msg = f"agentmem serve did not start: {log.read()[-2000:]}"
                raise RuntimeError(msg) from None
            time.sleep(0.1)
