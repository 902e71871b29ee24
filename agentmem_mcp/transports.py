"""How clients reach the MCP server: stdio (``agentmem mcp``) and streamable HTTP (``/mcp`` on
``agentmem serve``).

**stdio.** :func:`serve_stdio` opens the memory layer once (one Redis client, one PostgreSQL
pool), then answers one client on standard input and output until it closes them. Logs go to
standard error: standard output carries only the protocol.

**Streamable HTTP.** :class:`HttpEndpoint` is the SDK's streamable-HTTP transport as routes
for the web view's Starlette app, plus the session manager that the app's lifespan runs. The
web view's guard (:mod:`web.guard`) already answers only a ``Host`` naming this server, which
stops DNS rebinding. MCP's guidance is to validate ``Origin`` on every request: a browser
always sends one with a cross-origin request (and on every POST), while MCP clients that are
programs send none. So the endpoint refuses, whatever the method, a request whose ``Origin``
names another origin (403), and serves one without an ``Origin``: a page on another site can
neither call a tool nor open the event stream, and a desktop client needs no token. (The
web view's CSRF token is for its HTML forms; the endpoint does not ask for it, since a
request without ``Origin`` cannot come from another site's page.) The SDK's own Host/Origin
check is left off: it allows any port on localhost, where the guard allows only this one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from agentmem.mcp.tools import create_server
from agentmem.memory import Memory, MemoryConfig, open_memory
from agentmem.web.guard import origin_ok

PATH = "/mcp"


async def serve_stdio(config: MemoryConfig, *, namespaces: frozenset[str] | None = None) -> None:
    """Serve one MCP client on stdin/stdout until it closes them (see the module's notes)."""
    async with open_memory(config, "mcp", wait=10.0) as memory:
        await create_server(lambda: memory, namespaces=namespaces).run_stdio_async()


class HttpEndpoint:
    """The MCP endpoint of a Starlette app: add :attr:`routes`, and enter :meth:`run` in the
    app's lifespan (after the memory ``memory()`` returns is open)."""

    def __init__(
        self, memory: Callable[[], Memory], *, namespaces: frozenset[str] | None = None
    ) -> None:
        server = create_server(memory, namespaces=namespaces)
        # Builds the session manager; its routes are taken one by one below.
        server.streamable_http_app(
            streamable_http_path=PATH,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        self._manager = server.session_manager
        handler = SameOriginOnly(StreamableHTTPASGIApp(self._manager))
        self.routes: list[BaseRoute] = [Route(PATH, handler)]

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """Run the sessions' task group while the app serves."""
        async with self._manager.run():
            yield


class SameOriginOnly:
    """ASGI wrapper: refuse a request whose ``Origin`` is another origin, whatever its method
    (the web view's :class:`~web.guard.HostGuard` has checked ``Host``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = Headers(scope=scope).get("origin")
        if scope["type"] == "http" and origin is not None and not origin_ok(scope, origin):
            refused = PlainTextResponse("cross-origin request refused", status_code=403)
            await refused(scope, receive, send)
            return
        await self.app(scope, receive, send)
