"""The web view's pages and its requeue action, over HTTP against real stores."""

from __future__ import annotations

import http.client
import re
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import anyio
import asyncpg
import pytest
from pydantic import SecretStr
from rich.console import Console

from agentmem.agents import Settings
from agentmem.agents.documents import PLAN_KEY, Draft, PlanDoc, draft_key
from agentmem.agents.llm_output import Paragraph
from agentmem.devservers import ServerUrls
from agentmem.memory import AgentEvent, MemoryConfig, NewFact, RunEntry, open_memory
from agentmem.memory.connections import RedisClient
from agentmem.orchestrator.inspection import show_run
from agentmem.protocol.events import (
    ROUTES,
    RUN_STREAM,
    EventType,
    RunPlanned,
    RunRequested,
    SectionPlan,
    SourceDoc,
    new_event,
)
from tests.web.conftest import WEB_CLIENT

pytestmark = pytest.mark.anyio


def get(url: str, data: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def fetch(url: str, data: bytes | None = None) -> tuple[int, str]:
    return await anyio.to_thread.run_sync(get, url, data)


async def test_runs_are_listed_and_a_run_page_shows_its_state(
    servers: ServerUrls, web_url: str, namespace: str
) -> None:
    """A run in the index is listed and linked; its page renders; an unknown run is a 404."""
    config = MemoryConfig(redis_url=servers.redis_url, database_url=servers.database_url)
    async with open_memory(config, namespace) as m:
        await m.runs.put(
            RunEntry(run_id=namespace, topic="Locks <&>", started_at=datetime.now(UTC))
        )
        request = RunRequested(topic="Locks <&>", sources=[SourceDoc(name="a.md", text="A.")])
        await m.events(RUN_STREAM).publish(
            new_event(EventType.RUN_REQUESTED, "orchestrator", request)
        )
    try:
        status, listing = await fetch(f"{web_url}/")
        assert status == 200
        assert f'href="/runs/{namespace}"' in listing
        assert "Locks &lt;&amp;&gt;" in listing

        status, page = await fetch(f"{web_url}/runs/{namespace}")
        assert status == 200
        assert "No sections planned yet" in page
        assert "<svg" in page
        assert "EventSource" in page  # still running: the page follows the stream

        status, _ = await fetch(f"{web_url}/runs/never-ran-{namespace}")
        assert status == 404
    finally:
        async with open_memory(config, namespace) as m:
            await m.runs.remove(namespace)
            await m.drop()


async def test_a_requeue_must_be_confirmed_and_name_a_real_dead_letter(
    web_url: str, dead_letter: tuple[str, str]
) -> None:
    """POST without confirm=yes is refused (400); an unknown dead letter is a 404."""
    page, _ = dead_letter
    token = page_token((await fetch(page))[1])
    url = f"{page}/dead-letters/1-0/requeue"

    status, text = await fetch(url, f"csrf_token={token}".encode())
    assert status == 400
    assert "confirm=yes" in text

    status, text = await fetch(url, f"confirm=yes&csrf_token={token}".encode())
    assert status == 404
    assert "no dead letter 1-0" in text


@pytest.fixture
async def dead_letter(
    servers: ServerUrls, web_url: str, namespace: str
) -> AsyncIterator[tuple[str, str]]:
    """A run with one dead letter: its page's URL, and the dead letter's id."""
    config = MemoryConfig(redis_url=servers.redis_url, database_url=servers.database_url)
    async with open_memory(config, namespace) as m:
        events = m.events(RUN_STREAM, routes=ROUTES)
        group = events.group("writer", "writer-1", route="writer")
        await group.ensure()
        await events.publish(
            AgentEvent(event_type=EventType.SECTION_ASSIGNED, agent_id="test", payload={"x": 1})
        )
        [delivery] = await group.read(count=1, block_ms=1000)
        await group.fail(delivery, "bad payload", final=True)
        [letter] = await events.dead_letters()
        yield f"{web_url}/runs/{namespace}", letter.dead_letter_id
        await m.drop()


def page_token(page: str) -> str:
    """The server's token, as a page's requeue form carries it."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


def send(
    url: str, method: str = "GET", body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """One request as given (its Host header too), redirects not followed."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=30)
    try:
        sent = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        connection.request(method, parts.path, body=body, headers=sent)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


async def test_a_requeue_from_another_origin_or_without_the_token_is_refused(
    web_url: str, dead_letter: tuple[str, str]
) -> None:
    """POST without the page's token, or with a foreign Origin, is refused (403); with both
    right it requeues (303) and the dead letter is gone."""
    page, letter = dead_letter
    token = page_token((await fetch(page))[1])
    url = f"{page}/dead-letters/{letter}/requeue"
    ours = {"Origin": web_url}

    def post(body: str, headers: dict[str, str]) -> tuple[int, str]:
        return send(url, "POST", body.encode(), headers)

    assert (await anyio.to_thread.run_sync(post, "confirm=yes", ours))[0] == 403
    wrong = f"confirm=yes&csrf_token={token[::-1]}"
    assert (await anyio.to_thread.run_sync(post, wrong, ours))[0] == 403
    right = f"confirm=yes&csrf_token={token}"
    foreign = {"Origin": "http://evil.example"}
    assert (await anyio.to_thread.run_sync(post, right, foreign))[0] == 403
    assert (await anyio.to_thread.run_sync(post, right, {"Origin": "null"}))[0] == 403
    # The page's requeue form for the letter: its id alone is also the original event's id on
    # the page when both were written in the same millisecond (ids are per stream).
    offered = f"{letter}/requeue"
    assert offered in (await fetch(page))[1]  # none of those requeued it

    status, _ = await anyio.to_thread.run_sync(post, right, ours)
    assert status == 303
    assert offered not in (await fetch(page))[1]


async def test_a_request_naming_another_host_is_refused(web_url: str) -> None:
    """Host evil.example (DNS rebinding) or another port is refused (421); the loopback names
    with this server's port are served."""
    port = urlsplit(web_url).port

    def status(host: str) -> int:
        return send(f"{web_url}/", headers={"Host": host})[0]

    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1:1", "localhost.evil.example"):
        assert await anyio.to_thread.run_sync(status, host) == 421, host
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
        assert await anyio.to_thread.run_sync(status, host) == 200, host


async def test_a_run_with_a_malformed_event_renders_and_inspect_shows_it(
    servers: ServerUrls, web_url: str, namespace: str
) -> None:
    """An event of a known type whose payload does not fit (the memory layer stores it) is
    shown as malformed by the run page (200) and by inspect, and the rest still folds."""
    config = MemoryConfig(redis_url=servers.redis_url, database_url=servers.database_url)
    async with open_memory(config, namespace) as m:
        log = m.events(RUN_STREAM)
        request = RunRequested(topic="Locks", sources=[SourceDoc(name="a.md", text="A.")])
        await log.publish(new_event(EventType.RUN_REQUESTED, "orchestrator", request))
        await log.publish(
            AgentEvent(event_type=EventType.RUN_PLANNED, agent_id="research-1", payload={"x": 1})
        )
    try:
        status, page = await fetch(f"{web_url}/runs/{namespace}")
        assert status == 200
        assert "Malformed events (1)" in page
        assert "run.planned by research-1" in page
        assert "<b>Locks</b>" in page

        console = Console(record=True, width=200)
        settings = Settings(
            redis_url=SecretStr(servers.redis_url), database_url=SecretStr(servers.database_url)
        )
        shown = await show_run(settings, namespace, console, facts=False, events=True, section=None)
        assert shown
        text = console.export_text()
        assert "1 malformed event(s)" in text
        assert "run.planned by research-1" in text
    finally:
        async with open_memory(config, namespace) as m:
            await m.drop()


async def test_the_view_serves_every_request_on_one_client_and_one_pool(
    servers: ServerUrls, web_url: str, redis_client: RedisClient, pg_pool: asyncpg.Pool
) -> None:
    """Pages of many runs reuse the connections the app opened at startup, not one per request."""

    async def pools() -> tuple[set[str], set[str]]:
        names = [c["name"] for c in await redis_client.client_list()]
        rows = await pg_pool.fetch("SELECT application_name FROM pg_stat_activity")
        apps = [r["application_name"] for r in rows]
        return (
            {n.rsplit("/", 1)[1] for n in names if n.startswith(f"{WEB_CLIENT}/")},
            {a.rsplit("/", 1)[1] for a in apps if a.startswith(f"{WEB_CLIENT}/")},
        )

    seen: list[tuple[set[str], set[str]]] = []
    for n in range(6):
        assert (await fetch(f"{web_url}/"))[0] == 200
        assert (await fetch(f"{web_url}/runs/no-such-run-{n}"))[0] == 404
        seen.append(await pools())
    redis_pools, pg_pools = seen[0]
    assert len(redis_pools) == 1
    assert len(pg_pools) == 1
    assert all(snapshot == seen[0] for snapshot in seen), seen


async def test_the_run_list_filters_by_state_and_refreshes_itself(
    servers: ServerUrls, web_url: str, namespace: str
) -> None:
    """/runs?state=failed lists the failed runs only, its table refetches itself, and an
    unknown state is a 400."""
    config = MemoryConfig(redis_url=servers.redis_url, database_url=servers.database_url)
    failed, completed = f"{namespace}-failed", f"{namespace}-completed"
    async with open_memory(config, namespace) as m:
        now = datetime.now(UTC)
        await m.runs.put(RunEntry(run_id=failed, topic="t", state="failed", started_at=now))
        await m.runs.put(RunEntry(run_id=completed, topic="t", state="completed", started_at=now))
    try:
        status, page = await fetch(f"{web_url}/runs?state=failed")
        assert status == 200
        assert failed in page
        assert completed not in page
        assert "/runs/list?state=failed" in page  # what its refresh fetches

        status, table = await fetch(f"{web_url}/runs/list?state=completed")
        assert status == 200
        assert completed in table
        assert failed not in table
        assert "<html" not in table

        status, _ = await fetch(f"{web_url}/runs?state=lost")
        assert status == 400
    finally:
        async with open_memory(config, namespace) as m:
            await m.runs.remove(failed)
            await m.runs.remove(completed)


async def test_the_run_list_filters_by_tenant_and_keeps_the_tenant_in_its_links(
    servers: ServerUrls, web_url: str, namespace: str
) -> None:
    """/runs?tenant=T lists T's runs only (on a server without keys), and its state links and
    refresh keep the tenant."""
    config = MemoryConfig(redis_url=servers.redis_url, database_url=servers.database_url)
    mine, theirs = f"{namespace}-acme", f"{namespace}-other"
    tenant = f"acme-{namespace[-8:]}"
    async with open_memory(config, namespace) as m:
        now = datetime.now(UTC)
        await m.runs.put(RunEntry(run_id=mine, topic="t", started_at=now, tenant=tenant))
        await m.runs.put(RunEntry(run_id=theirs, topic="t", started_at=now, tenant="other"))
    try:
        status, page = await fetch(f"{web_url}/runs?tenant={tenant}")
        assert status == 200
        assert mine in page
        assert theirs not in page
        assert f"/runs/list?tenant={tenant}" in page  # what its refresh fetches
        assert f"/runs?state=failed&amp;tenant={tenant}" in page

        status, table = await fetch(f"{web_url}/runs/list?state=running&tenant={tenant}")
        assert status == 200
        assert mine in table
        assert theirs not in table
    finally:
        async with open_memory(config, namespace) as m:
            await m.runs.remove(mine)
            await m.runs.remove(theirs)


async def test_the_run_page_and_inspect_give_groundedness_and_the_plans_repairs(
    servers: ServerUrls, web_url: str, namespace: str
) -> None:
    """Supported / counted sentences per section and in all, and the plan's repairs, shown."""
    config = MemoryConfig(redis_url=servers.redis_url, database_url=servers.database_url)
    section = SectionPlan(section_id="locks", title="Locks")
    fact = "A lock is a key set with NX and an expiry in milliseconds."
    async with open_memory(config, namespace) as m:
        log = m.events(RUN_STREAM)
        request = RunRequested(topic="Locks", sources=[SourceDoc(name="a.md", text=fact)])
        await log.publish(new_event(EventType.RUN_REQUESTED, "orchestrator", request))
        planned = RunPlanned(topic="Locks", sections=[section], fact_count=1)
        await log.publish(new_event(EventType.RUN_PLANNED, "research-1", planned))
        plan = PlanDoc(
            topic="Locks",
            sections=[section],
            source_sections={"a.md": "locks"},
            repairs=["section 'x' names no source: nothing fills it; dropped"],
        )
        await m.db.write(PLAN_KEY, plan.model_dump(mode="json"), "research-1", expected_version=0)
        [fact_id] = await m.memory.store_facts("research-1", [NewFact(fact, "locks")])
        text = f"{fact} Locks are a multi-user database with strong consistency."
        draft = Draft(
            title="Locks",
            paragraphs=[Paragraph(text=text, citations=[fact_id])],
            section=section,
            round=0,
        )
        await m.db.write(
            draft_key("locks"), draft.model_dump(mode="json"), "writer-1", expected_version=0
        )
    try:
        status, page = await fetch(f"{web_url}/runs/{namespace}")
        assert status == 200
        assert "Groundedness: 1 of 2 sentences (50%) supported" in page

        console = Console(record=True, width=200)
        settings = Settings(
            redis_url=SecretStr(servers.redis_url), database_url=SecretStr(servers.database_url)
        )
        assert await show_run(settings, namespace, console, facts=False, events=False, section=None)
        shown = console.export_text()
        assert "groundedness: 1 of 2 sentences (50%)" in shown
        assert "the model's plan was repaired" in shown
        assert "names no source" in shown
    finally:
        async with open_memory(config, namespace) as m:
            await m.drop()
