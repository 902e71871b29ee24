"""The door of ``agentmem serve`` against slow, unauthenticated and cross-scheme clients: the key
is checked before the body is read, a slow body is cut off, failed keys are rate-limited per
address, and an ``https`` origin of an allowed host (a TLS proxy) is this server's."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import anyio
import pytest

from agentmem.devservers import ServerUrls
from agentmem.mcp import HttpEndpoint
from agentmem.memory import MemoryConfig
from agentmem.memory.tenants import NewKey
from agentmem.web import create_app, door
from tests.web.test_tenants import call, serving, settings_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

PROXY_HOST = "am.example.com"


@pytest.fixture
def door_url(
    servers: ServerUrls, keys: dict[str, NewKey], monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """``serve`` with keys, a 1 s body deadline, and 3 failed keys per address (no refill)."""
    monkeypatch.setattr(door, "BODY_SECONDS", 1.0)
    monkeypatch.setattr(door, "FAILED_KEYS_BURST", 3)
    monkeypatch.setattr(door, "FAILED_KEYS_PER_SECOND", 0.001)
    config = MemoryConfig(redis_url=servers.redis_url, database_url=servers.database_url)
    app = create_app(
        config, settings_for(servers), auth=True, mount=HttpEndpoint, hosts=frozenset({PROXY_HOST})
    )
    with serving(app) as url:
        yield url


def raw(url: str, head: str, body: bytes = b"") -> str:
    """Send ``head`` (and ``body``, maybe short of its Content-Length) and read the answer's
    status line and headers; a server that never answers fails the test after 20 s."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pytest.fail(f"no answer within 20 s to {head.splitlines()[0]!r}")
    return answer.decode("latin-1")


def post_head(url: str, key: str | None, length: int) -> str:
    auth = "" if key is None else f"Authorization: Bearer {key}\n"
    return (
        f"POST /api/runs HTTP/1.1\nHost: {urlsplit(url).netloc}\n{auth}"
        f"Content-Type: application/json\nContent-Length: {length}\n"
    )


async def test_a_request_without_a_valid_key_is_refused_before_its_body(
    door_url: str,
) -> None:
    """A POST with a wrong key, or none, declaring a body it never sends is answered 401 at
    once (its body is not awaited)."""
    for key in ("wrong", None):
        answer = await anyio.to_thread.run_sync(raw, door_url, post_head(door_url, key, 1000))
        assert answer.startswith("HTTP/1.1 401"), answer


async def test_a_body_slower_than_the_deadline_gets_408(
    door_url: str, keys: dict[str, NewKey]
) -> None:
    """A valid key whose body stops short of its Content-Length gets 408 once the body
    deadline has passed, and the connection is closed."""
    head = post_head(door_url, keys["A"].key, 1000)
    answer = await anyio.to_thread.run_sync(raw, door_url, head, b'{"topic": "t"')
    assert answer.startswith("HTTP/1.1 408"), answer
    assert "connection: close" in answer.lower()


async def test_failed_keys_from_one_address_are_refused_without_a_lookup(
    door_url: str, keys: dict[str, NewKey]
) -> None:
    """Past its burst of failed keys an address gets 429 with Retry-After, for a header or
    the login form, and even a valid key then: it is refused before PostgreSQL is asked."""

    def get(key: str) -> tuple[int, dict[str, str]]:
        reply = call("GET", f"{door_url}/", Authorization=f"Bearer {key}")
        return reply.status, reply.headers

    assert (await anyio.to_thread.run_sync(get, keys["A"].key))[0] == 200
    assert [(await anyio.to_thread.run_sync(get, "wrong"))[0] for _ in range(3)] == [401] * 3
    status, headers = await anyio.to_thread.run_sync(get, "wrong")
    assert status == 429
    assert int(headers["retry-after"]) >= 1
    assert (await anyio.to_thread.run_sync(get, keys["A"].key))[0] == 429
    login = await anyio.to_thread.run_sync(
        lambda: call("POST", f"{door_url}/login", f"key={keys['A'].key}".encode())
    )
    assert login.status == 429
    assert keys["A"].key not in login.text


async def test_sign_in_and_posts_work_behind_a_tls_proxy(
    door_url: str, keys: dict[str, NewKey]
) -> None:
    """Through a TLS proxy (``--allow-host`` name, ``Origin: https://<name>``) the login form
    signs in and an API POST reaches its route; ``null`` and other sites stay refused (403)."""
    key = keys["A"].key

    def login(origin: str) -> int:
        body = f"key={key}".encode()
        proxied = {"Host": PROXY_HOST, "X-Forwarded-Proto": "https", "Origin": origin}
        return call("POST", f"{door_url}/login", body, **proxied).status

    def api(origin: str) -> int:
        headers = {"Host": PROXY_HOST, "Origin": origin, "Authorization": f"Bearer {key}"}
        headers["Content-Type"] = "application/json"
        return call("POST", f"{door_url}/api/runs", b"{}", **headers).status

    assert await anyio.to_thread.run_sync(login, f"https://{PROXY_HOST}") == 303
    assert await anyio.to_thread.run_sync(login, f"https://{PROXY_HOST}:443") == 303
    assert await anyio.to_thread.run_sync(api, f"https://{PROXY_HOST}") == 400  # its route
    for other in ("null", "https://evil.example", f"ftp://{PROXY_HOST}"):
        assert await anyio.to_thread.run_sync(login, other) == 403, other
        assert await anyio.to_thread.run_sync(api, other) == 403, other
