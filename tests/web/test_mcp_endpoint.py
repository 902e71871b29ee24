"""The web view's MCP endpoint: open to MCP clients, closed to other sites' pages."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import anyio
import pytest

from tests.agentmem_mcp.clients import http_tools

pytestmark = pytest.mark.anyio

_INITIALIZE = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "probe", "version": "0"},
        },
    }
).encode()


def send(url: str, method: str, headers: dict[str, str]) -> int:
    data = _INITIALIZE if method == "POST" else None
    base = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    request = urllib.request.Request(url, data=data, method=method, headers=base | headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def status_of(url: str, method: str, **headers: str) -> int:
    return await anyio.to_thread.run_sync(send, url, method, headers)


async def test_an_mcp_client_without_origin_calls_tools(web_url: str, namespace: str) -> None:
    """The official client (no Origin header, no CSRF token) initializes and calls a tool."""
    async with http_tools(f"{web_url}/mcp") as tools:
        stored = await tools.call(
            "facts_store", namespace=namespace, agent_id="a", fact="F.", category="c"
        )
        facts = await tools.call("facts_read", namespace=namespace, category="c")
    assert [f["id"] for f in facts["facts"]] == [stored["id"]]


@pytest.mark.parametrize("method", ["POST", "GET", "DELETE"])
async def test_a_request_from_another_origin_is_refused(web_url: str, method: str) -> None:
    """Whatever the method, a request whose Origin is another site is refused (403)."""
    assert await status_of(f"{web_url}/mcp", method, Origin="http://evil.example") == 403
    other_port = web_url.rsplit(":", 1)[0] + ":1"
    assert await status_of(f"{web_url}/mcp", method, Origin=other_port) == 403


async def test_a_request_for_another_host_is_refused(web_url: str) -> None:
    """A request naming another host (DNS rebinding) is refused (421)."""
    assert await status_of(f"{web_url}/mcp", "POST", Host="evil.example") == 421


async def test_a_same_origin_request_is_served(web_url: str) -> None:
    """A request whose Origin is this server itself is served."""
    assert await status_of(f"{web_url}/mcp", "POST", Origin=web_url) == 200
