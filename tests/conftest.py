"""Test session setup: real Redis and PostgreSQL, started once for the whole session.

When REDIS_URL / DATABASE_URL are set the tests use those servers instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import redis.asyncio as redis

from devservers import ServerUrls, local_servers
from memory.retry import set_testing


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def _no_retry_waits() -> Iterator[None]:
    set_testing(True)
    yield
    set_testing(False)


@pytest.fixture(scope="session")
def servers() -> Iterator[ServerUrls]:
    """Real servers for the session: the embedded ones unless URLs are given."""
    with local_servers(os.environ.get("REDIS_URL"), os.environ.get("DATABASE_URL")) as urls:
        yield urls


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses, so tests never see each other's keys."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis_client(servers: ServerUrls) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(servers.redis_url, decode_responses=False)
    yield client
    await client.aclose()


@pytest.fixture
async def pg_pool(servers: ServerUrls) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(servers.database_url, min_size=1, max_size=20)
    yield pool
    await pool.close()
