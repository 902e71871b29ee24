"""Test session setup: real Redis and PostgreSQL, started once for the whole session.

When REDIS_URL / DATABASE_URL are set the tests use those servers instead. With
``AGENTMEM_TEST_REDIS=cluster`` (``make test-cluster``) Redis is a local 3-primary,
3-replica Redis Cluster, reached through one of its nodes.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from devservers import ServerUrls, local_servers
from devservers.cluster import local_cluster
from memory.connections import MemoryConfig, RedisClient, connect_redis
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
    with contextlib.ExitStack() as stack:
        redis_url = os.environ.get("REDIS_URL")
        if os.environ.get("AGENTMEM_TEST_REDIS") == "cluster" and not redis_url:
            redis_url = stack.enter_context(local_cluster()).url
        yield stack.enter_context(local_servers(redis_url, os.environ.get("DATABASE_URL")))


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses, so tests never see each other's keys."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis_client(servers: ServerUrls) -> AsyncIterator[RedisClient]:
    """A client of the session's Redis (a cluster client when it is a cluster)."""
    client = await connect_redis(MemoryConfig(redis_url=servers.redis_url))
    yield client
    await client.aclose()


@pytest.fixture
async def pg_pool(servers: ServerUrls) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(servers.database_url, min_size=1, max_size=20)
    yield pool
    await pool.close()
