"""A Redis client that counts its round trips: each packed write to the socket is one."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import pytest
from redis.asyncio.connection import Connection

from agentmem.memory.connections import MemoryConfig, RedisClient, connect_redis


class CountingConnection(Connection):
    """A connection that adds one to ``sent`` for every batch of commands it sends."""

    sent = 0

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        type(self).sent += 1
        await super().send_packed_command(command, check_health)


# On a cluster, redis-py builds each node's connections itself and ignores connection_class.
standalone_only = pytest.mark.skipif(
    os.environ.get("AGENTMEM_TEST_REDIS") == "cluster",
    reason="counts the connections of a standalone client",
)


async def counting_client(url: str, **kwargs: Any) -> tuple[RedisClient, type[CountingConnection]]:
    """A client (a cluster client on a cluster) whose connections count round trips in the
    returned class's ``sent``."""
    counter = type("Counter", (CountingConnection,), {"sent": 0})
    client = await connect_redis(MemoryConfig(redis_url=url), connection_class=counter, **kwargs)
    return client, counter
