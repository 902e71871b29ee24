"""Test session setup: real Redis and PostgreSQL, started once for the whole session.

When REDIS_URL / DATABASE_URL are set the tests use those servers instead. With
``AGENTMEM_TEST_REDIS=cluster`` (``make test-cluster``) Redis is a local 3-primary,
3-replica Redis Cluster, reached through one of its nodes. A REDIS_URL naming a node of a
cluster is recognised when the session starts (``AGENTMEM_TEST_REDIS`` is then set to
``cluster``), so that the tests that need a standalone server skip, with their reason.
Tests that must stop, crash or restart a server start their own.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import redis as sync_redis

from agentmem.devservers import ServerUrls, local_servers
from agentmem.devservers.cluster import local_cluster
from agentmem.memory.connections import MemoryConfig, RedisClient, connect_redis
from agentmem.memory.retry import set_testing


def pytest_configure(config: pytest.Config) -> None:
    """Tell a Redis Cluster from a standalone server when REDIS_URL names one."""
    redis_url = os.environ.get("REDIS_URL")
    if redis_url and not os.environ.get("AGENTMEM_TEST_REDIS"):
        first = redis_url.split(",")[0].strip()
        with sync_redis.Redis.from_url(first, socket_connect_timeout=5, socket_timeout=5) as r:
            if r.info("cluster").get("cluster_enabled"):
                os.environ["AGENTMEM_TEST_REDIS"] = "cluster"


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
