"""Tenants on ``agentmem serve``: keys at the door, isolation, limits, audit (issue 20)."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import asyncpg
import pytest
import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette

from agentmem.agents import Settings
from agentmem.devservers import ServerUrls
from agentmem.mcp import HttpEndpoint
from agentmem.memory import AgentEvent, MemoryConfig, open_memory
from agentmem.memory.admission import Admission
from agentmem.memory.audit import AuditLog
from agentmem.memory.tenants import NewKey, TenantKeys
from agentmem.protocol.events import ROUTES, RUN_STREAM, EventType
from agentmem.web import HOST, create_app
from tests.agentmem_mcp.clients import Tools
from tests.web.conftest import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

SOURCES = [{"name": "a.md", "text": "Alpha notes."}]


@dataclass
class Reply:
    status: int
    text: str
    headers: dict[str, str]


def call(method: str, url: str, body: bytes | None = None, **headers: str) -> Reply:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    opener = urllib.request.build_opener(_NoRedirect())
    try:
        with opener.open(request, timeout=30) as reply:
            return Reply(reply.status, reply.read().decode(), _lower(reply.headers.items()))
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.read().decode(), _lower(exc.headers.items()))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _lower(items: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in items}


async def ask(method: str, url: str, key: str | None, body: object = None) -> Reply:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    return await anyio.to_thread.run_sync(lambda: call(method, url, data, **headers))


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the app did not start within 20 s")
        time.sleep(0.05)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def settings_for(servers: ServerUrls, **overrides: Any) -> Settings:
    return Settings(
        redis_url=SecretStr(servers.redis_url),
        database_url=SecretStr(servers.database_url),
        llm="stub",
        **overrides,
    )


@pytest.fixture
def app_url(servers: ServerUrls, keys: dict[str, NewKey]) -> Iterator[str]:
    config = MemoryConfig(redis_url=servers.redis_url, database_url=servers.database_url)
    with serving(create_app(config, settings_for(servers), auth=True, mount=HttpEndpoint)) as url:
        yield url


async def submit(url: str, key: NewKey, topic: str) -> str:
    reply = await ask("POST", f"{url}/api/runs", key.key, {"topic": topic, "sources": SOURCES})
    assert reply.status == 202, reply.text
    run_id: str = json.loads(reply.text)["run_id"]
    return run_id


async def test_every_route_needs_a_valid_key(app_url: str, keys: dict[str, NewKey]) -> None:
    """Without a key, with a wrong one, or with a malformed one, every route answers 401
    (a browser's page request: a redirect to /login), and no answer repeats the key."""
    wrong = keys["A"].key[:-4] + "AAAA"
    for path in ("/", "/runs/x", "/runs/x/body", "/runs/x/stream", "/api/runs/x", "/metrics"):
        for key in (None, wrong, "am_nothing", "Basic abc"):
            reply = await ask("GET", f"{app_url}{path}", key)
            assert reply.status == 401, (path, key, reply.text)
            assert wrong not in reply.text
    posted = await ask("POST", f"{app_url}/api/runs", wrong, {"topic": "t", "sources": SOURCES})
    assert posted.status == 401
    mcp = await ask("POST", f"{app_url}/mcp", None, {"jsonrpc": "2.0", "id": 1, "method": "x"})
    assert mcp.status == 401
    page = await anyio.to_thread.run_sync(lambda: call("GET", app_url, Accept="text/html"))
    assert (page.status, page.headers["location"]) == (303, "/login")


async def test_a_revoked_key_is_refused_by_the_next_request(
    app_url: str, keys: dict[str, NewKey], servers: ServerUrls
) -> None:
    """A key works, is revoked, and the very next request with it is refused."""
    assert (await ask("GET", f"{app_url}/", keys["A"].key)).status == 200
    pool = await asyncpg.create_pool(servers.database_url, min_size=1, max_size=1)
    try:
        assert await TenantKeys(pool).revoke(keys["A"].key_id) is not None
    finally:
        await pool.close()
    assert (await ask("GET", f"{app_url}/", keys["A"].key)).status == 401


async def test_the_login_form_sets_a_cookie_that_opens_the_pages(
    app_url: str, keys: dict[str, NewKey]
) -> None:
    """POST /login with a valid key sets an HttpOnly, SameSite=Strict cookie; the pages then
    open with it; a wrong key gets the form again, without the key in it."""
    key = keys["A"].key

    def login(value: str) -> Reply:
        body = f"key={value}".encode()
        return call("POST", f"{app_url}/login", body)

    refused = await anyio.to_thread.run_sync(login, key[:-2] + "zz")
    assert refused.status == 401
    assert key[:-2] not in refused.text
    signed = await anyio.to_thread.run_sync(login, key)
    assert signed.status == 303
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    page = await anyio.to_thread.run_sync(
        lambda: call("GET", f"{app_url}/", Cookie=cookie.split(";")[0])
    )
    assert page.status == 200
    assert key not in page.text


async def test_tenant_a_cannot_reach_tenant_b_through_any_endpoint(
    app_url: str, keys: dict[str, NewKey]
) -> None:
    """With A's key, every route given B's run id answers exactly as for a run that does not
    exist (404, never 403), B's runs are not listed, and B's series are not in /metrics."""
    a, b = keys["A"], keys["B"]
    b_run = await submit(app_url, b, "B's secret topic")
    a_run = await submit(app_url, a, "A's topic")
    assert (await ask("GET", f"{app_url}/api/runs/{b_run}", b.key)).status == 200
    assert (await ask("GET", f"{app_url}/runs/{b_run}", b.key)).status == 200
    missing = "run-00000000000000000000"
    for method, path in [
        ("GET", "/runs/{}"),
        ("GET", "/runs/{}/body"),
        ("GET", "/runs/{}/report"),
        ("GET", "/runs/{}/stream"),
        ("GET", "/api/runs/{}"),
        ("POST", "/runs/{}/dead-letters/1-0/requeue"),
    ]:
        theirs = await ask(
            method, app_url + path.format(b_run), a.key, {} if method == "POST" else None
        )
        nobody = await ask(
            method, app_url + path.format(missing), a.key, {} if method == "POST" else None
        )
        assert theirs.status == 404, (path, theirs.text)
        assert (theirs.status, theirs.text.replace(b_run, "ID")) == (
            nobody.status,
            nobody.text.replace(missing, "ID"),
        ), path
    listing = await ask("GET", f"{app_url}/", a.key)
    assert a_run in listing.text
    assert b_run not in listing.text
    assert b_run not in (await ask("GET", f"{app_url}/runs/list", a.key)).text
    assert "B&#x27;s secret topic" not in listing.text
    assert "secret topic" not in listing.text
    metrics = await ask("GET", f"{app_url}/metrics", a.key)
    assert b.tenant not in metrics.text
    assert a.tenant in metrics.text
    # Submitting as B, or with B's run id, makes nothing of B's.
    as_b = {"tenant": b.tenant, "topic": "t", "sources": SOURCES}
    assert (await ask("POST", f"{app_url}/api/runs", a.key, as_b)).status == 400
    reused = {"topic": "t", "sources": SOURCES, "run_id": b_run}
    mine = json.loads((await ask("POST", f"{app_url}/api/runs", a.key, reused)).text)
    assert mine["run_id"] != b_run
    assert (await ask("GET", f"{app_url}/api/runs/{mine['run_id']}", b.key)).status == 404


async def test_tenant_a_cannot_reach_tenant_b_through_any_mcp_tool(
    app_url: str, keys: dict[str, NewKey], servers: ServerUrls
) -> None:
    """Every MCP tool called with A's key and B's namespace reaches A's own namespace of that
    name: A reads none of B's facts, documents, events, statuses; takes B's held lock as its
    own; cannot renew or release B's lease; nothing A writes shows in B's namespace; and A's
    writes are in A's audit log with A's key id."""
    ns = "shared-notes"
    async with mcp_tools(app_url, keys["B"].key) as b:
        await b.call("facts_store", namespace=ns, agent_id="b", fact="B fact", category="c")
        await b.call("doc_write", namespace=ns, key="d", value={"b": 1}, agent_id="b")
        await b.call("event_publish", namespace=ns, stream="s", event_type="x", agent_id="b")
        await b.call("status_set", namespace=ns, agent_id="b", status="busy")
        lock = await b.call("lock_acquire", namespace=ns, resource="r", agent_id="b")
        assert lock["acquired"]
    async with mcp_tools(app_url, keys["A"].key) as a:
        assert (await a.call("facts_read", namespace=ns, category="c"))["facts"] == []
        assert (await a.call("facts_categories", namespace=ns))["categories"] == []
        assert not (await a.call("doc_read", namespace=ns, key="d"))["found"]
        assert (await a.call("doc_history", namespace=ns, key="d"))["versions"] == []
        assert (await a.call("events_read", namespace=ns, stream="s"))["events"] == []
        assert (await a.call("status_list", namespace=ns))["agents"] == []
        lease = {"namespace": ns, "resource": "r", "agent_id": "b"}
        token = lock["lease_token"]
        assert not (await a.call("lock_renew", **lease, lease_token=token))["renewed"]
        assert not (await a.call("lock_release", **lease, lease_token=token))["released"]
        assert (await a.call("lock_acquire", namespace=ns, resource="r", agent_id="a"))["acquired"]
        await a.call("facts_store", namespace=ns, agent_id="a", fact="A fact", category="c")
        await a.call("doc_write", namespace=ns, key="d", value={"a": 1}, agent_id="a")
        await a.call("event_publish", namespace=ns, stream="s", event_type="y", agent_id="a")
        await a.call("status_set", namespace=ns, agent_id="a", status="idle")
    async with mcp_tools(app_url, keys["B"].key) as b:
        facts = (await b.call("facts_read", namespace=ns, category="c"))["facts"]
        assert [f["fact"] for f in facts] == ["B fact"]
        assert (await b.call("doc_read", namespace=ns, key="d"))["value"] == {"b": 1}
        events = (await b.call("events_read", namespace=ns, stream="s"))["events"]
        assert [e["event_type"] for e in events] == ["x"]
        assert [s["agent_id"] for s in (await b.call("status_list", namespace=ns))["agents"]] == [
            "b"
        ]
        renewed = await b.call(
            "lock_renew", namespace=ns, resource="r", agent_id="b", lease_token=token
        )
        assert renewed["renewed"]
    pool = await asyncpg.create_pool(servers.database_url, min_size=1, max_size=1)
    try:
        records = await AuditLog(pool).read(keys["A"].tenant)
    finally:
        await pool.close()
    assert [(r.key_id, r.action, r.target) for r in records] == [
        (keys["A"].key_id, "fact.store", f"{ns}:c"),
        (keys["A"].key_id, "doc.write", f"{ns}:d@1"),
        (keys["A"].key_id, "event.publish", f"{ns}:s"),
    ]


async def test_submissions_and_requeues_are_audited_without_the_key(
    app_url: str, keys: dict[str, NewKey], servers: ServerUrls
) -> None:
    """A submission is in the tenant's audit log and in the run's log with the tenant and
    key id, and the key itself is in neither."""
    b = keys["B"]
    run_id = await submit(app_url, b, "audited topic")
    config = MemoryConfig(redis_url=servers.redis_url, database_url=servers.database_url)
    async with open_memory(config, run_id) as m:
        records = await AuditLog(m.db.pool).read(b.tenant)
        events = await m.events(RUN_STREAM).read_events("0-0", 1000)
    assert [(r.key_id, r.action, r.target) for r in records] == [(b.key_id, "submit", run_id)]
    audits = [e.payload for e in events if e.event_type == EventType.AUDIT_RECORDED]
    assert audits == [
        {"tenant": b.tenant, "key_id": b.key_id, "action": "submit", "target": run_id}
    ]
    secret = b.key.split("_", 2)[2]
    assert secret not in repr(records)
    assert secret not in repr(events)


async def test_a_tenant_over_its_rate_or_a_body_over_the_size_is_refused(
    servers: ServerUrls, keys: dict[str, NewKey]
) -> None:
    """Past its burst a tenant gets 429 with Retry-After and one line, while another tenant
    is still served; a body over the limit gets 413."""
    config = MemoryConfig(redis_url=servers.redis_url, database_url=servers.database_url)
    settings = settings_for(
        servers, tenant_requests_per_second=0.01, tenant_request_burst=2, max_request_bytes=2048
    )
    with serving(create_app(config, settings, auth=True, mount=HttpEndpoint)) as url:
        a, b = keys["A"].key, keys["B"].key
        assert [(await ask("GET", f"{url}/", a)).status for _ in range(2)] == [200, 200]
        refused = await ask("GET", f"{url}/", a)
        assert refused.status == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert "request rate" in refused.text
        assert "\n" not in refused.text.strip()
        assert (await ask("GET", f"{url}/", b)).status == 200
        big = {"topic": "t", "sources": [{"name": "a.md", "text": "x" * 4000}]}
        assert (await ask("POST", f"{url}/api/runs", b, big)).status == 413


def mcp_tools(url: str, key: str) -> Any:
    """An MCP session with ``url``/mcp sending ``key`` as a bearer token."""
    from contextlib import asynccontextmanager

    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    @asynccontextmanager
    async def session() -> AsyncIterator[Tools]:
        headers = {"Authorization": f"Bearer {key}"}
        async with (
            create_mcp_http_client(headers=headers) as client,
            streamable_http_client(f"{url}/mcp", http_client=client) as (read, write),
            ClientSession(read, write) as s,
        ):
            await s.initialize()
            yield Tools(s)

    return session()


async def test_only_the_owner_requeues_a_dead_letter_and_it_is_audited(
    app_url: str, keys: dict[str, NewKey], servers: ServerUrls, namespace: str
) -> None:
    """A's key with the page's token and B's real dead letter gets 404 and requeues nothing;
    B's key requeues it (303), recorded with B's key id in B's audit log and the run's log."""
    a, b = keys["A"], keys["B"]
    config = MemoryConfig(redis_url=servers.redis_url, database_url=servers.database_url)
    async with open_memory(config, namespace) as m:
        await Admission(m.client, b.tenant).claim(namespace)  # B submitted this run
        events = m.events(RUN_STREAM, routes=ROUTES)
        group = events.group("writer", "writer-1", route="writer")
        await group.ensure()
        await events.publish(
            AgentEvent(event_type=EventType.SECTION_ASSIGNED, agent_id="test", payload={"x": 1})
        )
        [delivery] = await group.read(count=1, block_ms=1000)
        await group.fail(delivery, "bad payload", final=True)
        [letter] = await events.dead_letters()
        page = await ask("GET", f"{app_url}/runs/{namespace}", b.key)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None, page.text
        url = f"{app_url}/runs/{namespace}/dead-letters/{letter.dead_letter_id}/requeue"
        form = f"confirm=yes&csrf_token={token.group(1)}".encode()

        def post(key: str) -> Reply:
            return call("POST", url, form, Authorization=f"Bearer {key}")

        refused = await anyio.to_thread.run_sync(post, a.key)
        assert (refused.status, refused.text) == (404, "unknown run")
        assert len(await events.dead_letters()) == 1
        assert (await anyio.to_thread.run_sync(post, b.key)).status == 303
        assert await events.dead_letters() == []
        records = await AuditLog(m.db.pool).read(b.tenant)
        logged = await m.events(RUN_STREAM).read_events("0-0", 100)
        await m.drop()
    assert [(r.key_id, r.action, r.target) for r in records] == [(b.key_id, "requeue", namespace)]
    assert [e.payload["action"] for e in logged if e.event_type == EventType.AUDIT_RECORDED] == [
        "requeue"
    ]


async def test_a_configured_host_name_is_served_and_others_are_not(
    servers: ServerUrls, keys: dict[str, NewKey]
) -> None:
    """`--allow-host` names (a proxy's) are answered on any port; other names get 421."""
    config = MemoryConfig(redis_url=servers.redis_url, database_url=servers.database_url)
    app = create_app(config, auth=True, hosts=frozenset({"agentmem.example"}))
    with serving(app) as url:

        def get(host: str) -> int:
            return call("GET", f"{url}/", Host=host, Authorization=f"Bearer {keys['A'].key}").status

        assert await anyio.to_thread.run_sync(get, "agentmem.example") == 200
        assert await anyio.to_thread.run_sync(get, "agentmem.example:443") == 200
        assert await anyio.to_thread.run_sync(get, "evil.example") == 421
