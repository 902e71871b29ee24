"""A Redis client that counts its round trips: each packed write to the socket is one."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis.asyncio as redis
from redis.asyncio.connection import Connection


class CountingConnection(Connection):
    """A connection that adds one to ``sent`` for every batch of commands it sends."""

    sent = 0

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        type(self).sent += 1
        await super().send_packed_command(command, check_health)


def counting_client(url: str, **kwargs: Any) -> tuple[redis.Redis, type[CountingConnection]]:
    """A client whose connections count round trips in the returned class's ``sent``."""
    counter = type("Counter", (CountingConnection,), {"sent": 0})
    pool = redis.ConnectionPool.from_url(url, connection_class=counter, **kwargs)
    return redis.Redis.from_pool(pool), counter
