"""The web view's pages and its requeue action, over HTTP against real stores."""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import UTC, datetime

import anyio
import pytest

from agents.protocol import RUN_STREAM, EventType, RunRequested, SourceDoc, new_event
from devservers import ServerUrls
from memory import MemoryConfig, RunEntry, open_memory

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
