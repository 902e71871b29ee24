"""The web view served by a real uvicorn on a free local port, over the session's servers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import uvicorn

from agentmem.devservers import ServerUrls
from agentmem.mcp import HttpEndpoint
from agentmem.memory import MemoryConfig
from agentmem.memory.migrate import migrate
from agentmem.memory.tenants import NewKey, TenantKeys
from agentmem.web import HOST, create_app

WEB_CLIENT = "web-view-test"  # the name the app's connections carry (CLIENT LIST, pg_stat_activity)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def web_url(servers: ServerUrls) -> Iterator[str]:
    """The base URL of ``agentmem serve``'s app (with ``/mcp``, as ``serve`` mounts it), running
    in a thread until the module ends."""
    config = MemoryConfig(
        redis_url=servers.redis_url, database_url=servers.database_url, client_name=WEB_CLIENT
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config, mount=HttpEndpoint), host=HOST, port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the web view did not start within 20 s")
        time.sleep(0.05)
    yield f"http://{HOST}:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
async def keys(servers: ServerUrls, namespace: str) -> AsyncIterator[dict[str, NewKey]]:
    """Keys of two tenants, A and B (revoked at the end: other tests serve without keys)."""
    pool = await asyncpg.create_pool(servers.database_url, min_size=1, max_size=2)
    await migrate(pool)
    store = TenantKeys(pool)
    made = {
        "A": await store.add(f"a-{namespace[-12:]}"),
        "B": await store.add(f"b-{namespace[-12:]}"),
    }
    try:
        yield made
    finally:
        for key in made.values():
            await store.revoke(key.key_id)
        await pool.close()
