"""The clients made in ``memory.connections``: what they tell the server about themselves."""

from __future__ import annotations

from importlib import metadata

import pytest

from devservers import ServerUrls
from memory.connections import MemoryConfig, redis_client, redis_urls

pytestmark = pytest.mark.anyio


async def test_every_new_redis_connection_names_the_library_and_its_version(
    servers: ServerUrls,
) -> None:
    """Each connection of a client says redis-py and its version (looked up once per process)."""
    config = MemoryConfig(servers.redis_url, client_name="agentmem:test")
    for _ in range(2):  # two clients, so two connections made from the one identity
        client = redis_client(config, redis_urls(config)[0])
        try:
            info = await client.client_info()
        finally:
            await client.aclose()
        assert info["lib-name"] == "redis-py"
        assert info["lib-ver"] == metadata.version("redis")
        assert str(info["name"]).startswith("agentmem:test/")
