"""The door of ``agentmem serve``: who is asking (a tenant's key), how often, and how much.

:class:`Door` is ASGI middleware in front of every route (pages, the live stream, the API,
``/metrics``, ``/mcp``). In order, for each HTTP request:

1. **Size.** A body over ``max_request_bytes`` is refused with 413 before any route reads it
   (by its ``Content-Length``, or by counting a body sent without one).
2. **Who.** With authentication on, the request must carry a valid tenant key: ``Authorization:
   Bearer <key>`` (the API, MCP clients, curl), or the ``agentmem_key`` cookie that the
   ``/login`` form sets for a browser (HttpOnly, SameSite=Strict: another site's page can
   neither read it nor send it). The key is read from the headers only, before any byte of the
   body: a request without a valid key is answered at once and its body is never read (the
   connection is then closed), so an unauthenticated client cannot make the server hold a
   body or wait for one. Keys are checked against PostgreSQL on every request
   (:meth:`memory.tenants.TenantKeys.verify`, constant time), so a revoked key is refused by
   the next request. Anything else is answered 401 (a page: a redirect to ``/login``), with one
   line that never repeats what was presented; 503 when PostgreSQL cannot be asked. A key in
   a URL (``?key=``) is not accepted: URLs end up in logs and browser history.
3. **Failed keys.** Each client address has a token bucket of failed key checks
   (:data:`FAILED_KEYS_PER_SECOND`, at most :data:`FAILED_KEYS_BURST` at once, in this
   process): a presented key that is not valid (a header, a cookie or the login form) takes a
   token, and once the address has none left its requests carrying a key are answered 429 with
   ``Retry-After`` *without* asking PostgreSQL, so bad keys cannot drive unbounded lookups
   (nor guess keys quickly). Requests that present no key cost no lookup and are not counted.
4. **How often.** Each tenant has a token bucket (``tenant_requests_per_second``, at most
   ``tenant_request_burst`` at once) in this server process; a request with no token left is
   answered 429 with ``Retry-After``. (Several ``serve`` processes each hold their own
   buckets: the rate a tenant gets is per process.)
5. **Body.** Only then is the body of an unsafe request read, bounded in size (413) and in time:
   a body that has not fully arrived :data:`BODY_SECONDS` after the headers is answered 408
   and the connection closed. The login form is the one exception to the order, as its key is
   in its body: it is read first, bounded the same way (size and time), then checked, counted
   in the failed-key bucket when wrong.

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

import anyio
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentmem.memory import AgentMemoryError
from agentmem.memory.tenants import Principal, TenantKeys

PRINCIPAL = "agentmem.principal"
COOKIE = "agentmem_key"
LOGIN_PATH = "/login"
BODY_SECONDS = 20.0  # the longest a request body may take to arrive once the headers are in
FAILED_KEYS_PER_SECOND = 1.0  # failed key checks a client address earns back, per second
FAILED_KEYS_BURST = 20  # failed key checks a client address may make at once
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # the methods whose body is not read
_CLOSE = [(b"connection", b"close")]  # an answer sent before the body was read ends the connection

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


_MAX_BUCKETS = 10_000  # past this many, the full ones are forgotten


@dataclass
class TokenBuckets:
    """One token bucket per tenant: ``rate`` tokens a second, at most ``burst`` saved."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def take(self, tenant: str) -> float:
        """Take a token for ``tenant``: 0.0 when it had one, else the seconds until it has."""
        wait, tokens, now = self._level(tenant)
        if wait == 0.0:
            tokens -= 1.0
        self._buckets[tenant] = (tokens, now)
        if len(self._buckets) > _MAX_BUCKETS:
            self._forget_full(now)
        return wait

    def wait(self, tenant: str) -> float:
        """The seconds until ``tenant`` has a token (0.0: it has one now), taking none."""
        return self._level(tenant)[0]

    def _level(self, tenant: str) -> tuple[float, float, float]:
        now = self.clock()
        tokens, then = self._buckets.get(tenant, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        return (0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate), tokens, now

    def _forget_full(self, now: float) -> None:
        """Drop the buckets that have refilled (a full bucket is what a new one would be)."""
        for name, (tokens, then) in list(self._buckets.items()):
            if tokens + (now - then) * self.rate >= self.burst:
                del self._buckets[name]


@dataclass(frozen=True, slots=True)
class DoorSettings:
    keys: Callable[[], TenantKeys] | None  # None: authentication off
    requests_per_second: float
    request_burst: int
    max_request_bytes: int


class _KeyRefused(Exception):
    """A presented key was refused before or by its check (the answer is already chosen)."""


class Door:
    """ASGI middleware: size, authentication and rate at the door (see the module's notes)."""

    def __init__(self, app: ASGIApp, settings: DoorSettings) -> None:
        self.app = app
        self.settings = settings
        self.buckets = TokenBuckets(settings.requests_per_second, settings.request_burst)
        self.failures = TokenBuckets(FAILED_KEYS_PER_SECOND, FAILED_KEYS_BURST)
        self.body_seconds = BODY_SECONDS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit = self.settings.max_request_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _answer(send, 413, f"the request body is over {limit} bytes; send less", _CLOSE)
            return
        if self.settings.keys is not None:
            if scope["path"] == LOGIN_PATH:
                await self._login(scope, receive, send)
                return
            who = await self._authenticate(scope, headers, send)
            if who is None:
                return
            wait = self.buckets.take(who.tenant)
            if wait > 0:
                await _too_many(send, wait, f"tenant {who.tenant!r} is over its request rate")
                return
            scope[PRINCIPAL] = who
        if scope["method"] not in SAFE_METHODS:
            body = await self._read_body(receive, send)
            if body is None:
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    async def _read_body(self, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None once it was refused (413 over the size, 408 too slow)."""
        limit = self.settings.max_request_bytes
        body: bytes | None = None
        with anyio.move_on_after(self.body_seconds) as deadline:
            body = await _read_body(receive, limit)
        if deadline.cancelled_caught:
            seconds = f"{self.body_seconds:g}"
            await _answer(send, 408, f"the request body took over {seconds} s to arrive", _CLOSE)
        elif body is None:
            await _answer(send, 413, f"the request body is over {limit} bytes; send less", _CLOSE)
        return body if not deadline.cancelled_caught else None

    async def _authenticate(self, scope: Scope, headers: Headers, send: Send) -> Principal | None:
        """The tenant of the key in the headers, or None once the request was answered."""
        assert self.settings.keys is not None
        scheme, _, presented = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            cookie: SimpleCookie = SimpleCookie()
            with contextlib.suppress(CookieError):  # a malformed header: no key
                cookie.load(headers.get("cookie", ""))
            presented = cookie[COOKIE].value if COOKIE in cookie else ""
        try:
            who = await self._verify(scope, presented.strip(), send)
        except _KeyRefused:
            return None
        if who is None:
            await self._refuse(scope, headers, send)
        return who

    async def _verify(self, scope: Scope, presented: str, send: Send) -> Principal | None:
        """Check ``presented`` (None: no key, or not valid); raise :class:`_KeyRefused` once
        the request was answered 429 (too many failed keys) or 503 (no database)."""
        assert self.settings.keys is not None
        if not presented:
            return None
        client = scope.get("client")
        address = str(client[0]) if client else ""
        wait = self.failures.wait(address)
        if wait > 0:
            await _too_many(send, wait, "too many invalid keys from this address")
            raise _KeyRefused
        try:
            who = await self.settings.keys().verify(presented)
        except AgentMemoryError:  # PostgreSQL is out of reach: say so, never what was sent
            await _answer(send, 503, "cannot check keys now (the database is unavailable); retry")
            raise _KeyRefused from None
        if who is None:
            self.failures.take(address)
        return who

    async def _refuse(self, scope: Scope, headers: Headers, send: Send) -> None:
        if scope["method"] == "GET" and "text/html" in headers.get("accept", ""):
            location = (b"location", LOGIN_PATH.encode())
            await _answer(send, 303, "sign in at /login", [location, *_CLOSE])
            return
        await _answer(
            send,
            401,
            "authentication required: send 'Authorization: Bearer <key>' with a valid key "
            "(an operator makes one with: agentmem tenants add NAME)",
            [(b"www-authenticate", b'Bearer realm="agentmem"'), *_CLOSE],
        )

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The sign-in page, and its form: the key is in the body, read first (bounded)."""
        if scope["method"] != "POST":
            page = _LOGIN_PAGE.format(message="Sign in with your tenant's key.")
            await _answer(send, 200, page, content_type=b"text/html; charset=utf-8")
            return
        body = await self._read_body(receive, send)
        if body is None:
            return
        form = parse_qs(body.decode("utf-8", "replace"))
        presented = next(iter(form.get("key", [])), "").strip()
        try:
            who = await self._verify(scope, presented, send)
        except _KeyRefused:
            return
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


async def _too_many(send: Send, wait: float, what: str) -> None:
    """429 saying ``what``, with ``Retry-After`` in whole seconds."""
    retry = str(max(1, math.ceil(wait)))
    await _answer(
        send, 429, f"{what}; retry in {retry} s", [(b"retry-after", retry.encode()), *_CLOSE]
    )


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
