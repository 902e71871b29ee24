"""What the web view refuses: requests for another host, and cross-site requests that change
something.

The view listens on the loopback interface, but a page on any web site can still reach it:

- DNS rebinding: a name the attacker controls is made to resolve to 127.0.0.1, and the
  browser then treats the view as that site, whose script may read every page. The request
  names the attacker's host in its ``Host`` header, so :class:`HostGuard` answers only a
  ``Host`` that names what this server serves: the address the connection reached (uvicorn's
  ``scope["server"]``) and its port, or, when that address is a loopback one, ``localhost``,
  ``127.0.0.1`` or ``[::1]`` with the same port, or a name the operator configured
  (``agentmem serve --host`` / ``--allow-host``: a public name, a proxy's), on any port.
  Anything else is refused with 421.
- Cross-site request forgery: a form on another site may POST to the view (a requeue hands a
  dead letter to the agents again). An unsafe request (any method but GET, HEAD and OPTIONS)
  whose ``Origin`` header names another origin is refused with 403 here (an origin is this
  server's when its host passes the ``Host`` check above, over ``http`` or, behind a TLS
  proxy, ``https``; ``null`` never is), and one without this server's token is refused with
  403 by the route (:func:`token_ok`): the token is random per server process, and is only in
  the pages this server renders, which another site's script cannot read (the same-origin
  policy, now that the ``Host`` check stops rebinding).
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_FIELD = "csrf_token"  # the form field carrying the token
TOKEN_HEADER = "x-csrf-token"  # or this header, for scripts and tools
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
CONFIGURED = "agentmem.hosts"  # the scope key carrying the configured host names


def new_token() -> str:
    """A token for one server process: what an unsafe request must carry."""
    return secrets.token_urlsafe(32)


def token_ok(expected: str, headers: Headers, form: dict[str, list[str]]) -> bool:
    """Whether a request carries ``expected`` in its header or its form (compared in
    constant time)."""
    given = headers.get(TOKEN_HEADER) or next(iter(form.get(TOKEN_FIELD, [])), "")
    return secrets.compare_digest(given.encode(), expected.encode())


def _split(host: str, default_port: int) -> tuple[str, int] | None:
    """``host[:port]`` as a lowercase name (brackets dropped) and a port; None if malformed."""
    try:
        parts = urlsplit(f"//{host}")
        name, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not name:
        return None
    return name.lower(), default_port if port is None else port


def served_names(scope: Scope) -> tuple[frozenset[str], int | None]:
    """The host names this server answers for on this connection, and its port (None: any)."""
    server = scope.get("server")
    if not server or server[1] is None:  # a Unix socket: only a local client can reach it
        return _LOOPBACK, None
    host, port = str(server[0]).lower(), int(server[1])
    return (_LOOPBACK | {host} if host in _LOOPBACK else frozenset({host})), port


def host_ok(scope: Scope, value: str | None, default_port: int) -> bool:
    """Whether ``value`` (a Host header, or an Origin's host and port) names this server."""
    if value is None:
        return False
    split = _split(value, default_port)
    if split is None:
        return False
    if split[0] in scope.get(CONFIGURED, ()):
        return True
    names, port = served_names(scope)
    return split[0] in names and (port is None or split[1] == port)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_ok(scope: Scope, origin: str) -> bool:
    """Whether an ``Origin`` header names this server: ``http`` or ``https`` (a TLS proxy in
    front), and a host and port that :func:`host_ok` answers (``null`` and others: no)."""
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme not in _DEFAULT_PORTS or parts.path not in ("", "/"):
        return False
    return host_ok(scope, parts.netloc, _DEFAULT_PORTS[parts.scheme])


class HostGuard:
    """ASGI middleware: refuse a request for another host (421), and an unsafe one from
    another origin (403). See the module's notes."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.hosts = frozenset(h.lower().strip("[]") for h in hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[CONFIGURED] = self.hosts
        headers = Headers(scope=scope)
        if not host_ok(scope, headers.get("host"), 80):
            await _refuse(send, 421, "this server does not serve that host name")
            return
        origin = headers.get("origin")
        unsafe = scope["method"] not in SAFE_METHODS
        if unsafe and origin is not None and not origin_ok(scope, origin):
            await _refuse(send, 403, "cross-origin request refused")
            return
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
