"""The web view's pages and its requeue action, over HTTP against real stores."""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import UTC, datetime

import anyio
import asyncpg
import pytest

from agents.protocol import RUN_STREAM, EventType, RunRequested, SourceDoc, new_event
from devservers import ServerUrls
from memory import MemoryConfig, RunEntry, open_memory
from memory.connections import RedisClient
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
    web_url: str, namespace: str
) -> None:
    """POST without confirm=yes is refused (400); an unknown dead letter is a 404."""
    url = f"{web_url}/runs/{namespace}/dead-letters/1-0/requeue"

    status, text = await fetch(url, b"")
    assert status == 400
    assert "confirm=yes" in text

    status, text = await fetch(url, b"confirm=yes")
    assert status == 404
    assert "no dead letter 1-0" in text


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
