"""The door of ``agentmem serve``: who is asking (a tenant's key), how often, and how much.

:class:`Door` is ASGI middleware in front of every route (pages, the live stream, the API,
``/metrics``, ``/mcp``). In order, for each HTTP request:

1. **Size.** A body over ``max_request_bytes`` is refused with 413 before any route reads it
   (by its ``Content-Length``, or by counting a body sent without one).
2. **Who.** With authentication on, the request must carry a valid tenant key: ``Authorization:
   Bearer <key>`` (the API, MCP clients, curl), or the ``agentmem_key`` cookie that the
   ``/login`` form sets for a browser (HttpOnly, SameSite=Strict: another site's page can
   neither read it nor send it). Keys are checked against PostgreSQL on every request
   (:meth:`memory.tenants.TenantKeys.verify`, constant time), so a revoked key is refused by
   the next request. Anything else is answered 401 (a page: a redirect to ``/login``), with one
   line that never repeats what was presented; 503 when PostgreSQL cannot be asked. A key in
   a URL (``?key=``) is not accepted: URLs end up in logs and browser history.
3. **How often.** Each tenant has a token bucket (``tenant_requests_per_second``, at most
   ``tenant_request_burst`` at once) in this server process; a request with no token left is
   answered 429 with ``Retry-After``. (Several ``serve`` processes each hold their own
   buckets: the rate a tenant gets is per process.)

The request then reaches its route with the tenant in ``scope["agentmem.principal"]``
(:func:`principal`), which every route uses to scope what it lists and reads. With
authentication off (a single local user on loopback), there is no principal and every route
sees every run, as before tenants existed.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentmem.memory import AgentMemoryError
from agentmem.memory.tenants import Principal, TenantKeys

PRINCIPAL = "agentmem.principal"
COOKIE = "agentmem_key"
LOGIN_PATH = "/login"

_LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>agentmem: sign in</title></head><body>
<h1>agentmem</h1><p>{message}</p>
<form method="post" action="/login">
<label>Tenant key <input type="password" name="key" autocomplete="off" required></label>
<button type="submit">Sign in</button></form></body></html>"""


def principal(connection: HTTPConnection | Scope) -> Principal | None:
    """The tenant a request was authenticated as (None: authentication is off)."""
    scope = connection.scope if isinstance(connection, HTTPConnection) else connection
    found = scope.get(PRINCIPAL)
    return found if isinstance(found, Principal) else None


@dataclass
class TokenBuckets:
    """One token bucket per tenant: ``rate`` tokens a second, at most ``burst`` saved."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def take(self, tenant: str) -> float:
        """Take a token for ``tenant``: 0.0 when it had one, else the seconds until it has."""
        now = self.clock()
        tokens, then = self._buckets.get(tenant, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens >= 1.0:
            self._buckets[tenant] = (tokens - 1.0, now)
            return 0.0
        self._buckets[tenant] = (tokens, now)
        return (1.0 - tokens) / self.rate


@dataclass(frozen=True, slots=True)
class DoorSettings:
    keys: Callable[[], TenantKeys] | None  # None: authentication off
    requests_per_second: float
    request_burst: int
    max_request_bytes: int


class Door:
    """ASGI middleware: size, authentication and rate at the door (see the module's notes)."""

    def __init__(self, app: ASGIApp, settings: DoorSettings) -> None:
        self.app = app
        self.settings = settings
        self.buckets = TokenBuckets(settings.requests_per_second, settings.request_burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit = self.settings.max_request_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _answer(send, 413, f"the request body is over {limit} bytes; send less")
            return
        if scope["method"] not in {"GET", "HEAD", "OPTIONS"}:
            body = await _read_body(receive, limit)
            if body is None:
                await _answer(send, 413, f"the request body is over {limit} bytes; send less")
                return
            receive = _replay(body, receive)
        else:
            body = b""
        if self.settings.keys is None:
            await self.app(scope, receive, send)
            return
        if scope["path"] == LOGIN_PATH:
            await self._login(scope, body, send)
            return
        try:
            who = await self._authenticate(headers)
        except AgentMemoryError:  # PostgreSQL is out of reach: say so, never what was sent
            await _answer(send, 503, "cannot check keys now (the database is unavailable); retry")
            return
        if who is None:
            await self._refuse(scope, headers, send)
            return
        wait = self.buckets.take(who.tenant)
        if wait > 0:
            retry = str(max(1, math.ceil(wait)))
            await _answer(
                send,
                429,
                f"tenant {who.tenant!r} is over its request rate; retry in {retry} s",
                [(b"retry-after", retry.encode())],
            )
            return
        scope[PRINCIPAL] = who
        await self.app(scope, receive, send)

    async def _authenticate(self, headers: Headers) -> Principal | None:
        assert self.settings.keys is not None
        scheme, _, presented = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            cookie: SimpleCookie = SimpleCookie()
            with contextlib.suppress(CookieError):  # a malformed header: no key
                cookie.load(headers.get("cookie", ""))
            presented = cookie[COOKIE].value if COOKIE in cookie else ""
        if not presented.strip():
            return None
        return await self.settings.keys().verify(presented.strip())

    async def _refuse(self, scope: Scope, headers: Headers, send: Send) -> None:
        if scope["method"] == "GET" and "text/html" in headers.get("accept", ""):
            await _answer(send, 303, "sign in at /login", [(b"location", LOGIN_PATH.encode())])
            return
        await _answer(
            send,
            401,
            "authentication required: send 'Authorization: Bearer <key>' with a valid key "
            "(an operator makes one with: agentmem tenants add NAME)",
            [(b"www-authenticate", b'Bearer realm="agentmem"')],
        )

    async def _login(self, scope: Scope, body: bytes, send: Send) -> None:
        assert self.settings.keys is not None
        if scope["method"] != "POST":
            page = _LOGIN_PAGE.format(message="Sign in with your tenant's key.")
            await _answer(send, 200, page, content_type=b"text/html; charset=utf-8")
            return
        form = parse_qs(body.decode("utf-8", "replace"))
        presented = next(iter(form.get("key", [])), "").strip()
        who = await self.settings.keys().verify(presented) if presented else None
        if who is None:
            page = _LOGIN_PAGE.format(message="That key is not valid (or was revoked).")
            await _answer(send, 401, page, content_type=b"text/html; charset=utf-8")
            return
        cookie = SimpleCookie()
        cookie[COOKIE] = presented
        cookie[COOKIE]["httponly"] = True
        cookie[COOKIE]["samesite"] = "Strict"
        cookie[COOKIE]["path"] = "/"
        if scope.get("scheme") == "https":
            cookie[COOKIE]["secure"] = True
        set_cookie = cookie.output(header="").strip().encode()
        await _answer(send, 303, "signed in", [(b"location", b"/"), (b"set-cookie", set_cookie)])


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body (None once it is over ``limit`` bytes)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then whatever the client sends next."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _answer(
    send: Send,
    status: int,
    text: str,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    content_type: bytes = b"text/plain; charset=utf-8",
) -> None:
    body = text.encode()
    start: dict[str, Any] = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            *(headers or []),
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})
