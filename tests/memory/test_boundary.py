"""The memory boundary: waits are bounded, outages become project errors, opening fails clearly."""

from __future__ import annotations

import os
import time
from urllib.parse import urlsplit, urlunsplit

import anyio
import pytest
import redis.asyncio as redis

from agentmem.devservers import ServerUrls
from agentmem.memory import (
    InvalidConfigError,
    MemoryConfig,
    ServerUnavailableError,
    open_memory,
)
from tests.memory.blackhole import BlackholeProxy

pytestmark = pytest.mark.anyio

# A proxy in front of one node cannot cut off a cluster client, which talks to every node.
through_proxy = pytest.mark.skipif(
    os.environ.get("AGENTMEM_TEST_REDIS") == "cluster",
    reason="the black-hole proxy fronts one standalone server",
)

TIMEOUT = 1.0
BOUND = TIMEOUT + TIMEOUT + 1.0  # connect + command timeout, plus the second allowed


def short(redis_url: str, database_url: str | None = None) -> MemoryConfig:
    """A config with one-second timeouts."""
    return MemoryConfig(redis_url, database_url, connect_timeout=TIMEOUT, command_timeout=TIMEOUT)


def via(url: str, port: int) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{host}:{port}"))


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


@through_proxy
async def test_a_blackholed_redis_fails_each_call_within_its_timeouts_and_work_resumes(
    servers: ServerUrls, namespace: str
) -> None:
    """Redis stops answering: the call raises ServerUnavailableError in time, then recovers."""
    async with BlackholeProxy(port_of(servers.redis_url)).running() as proxy:
        config = short(redis_url=via(servers.redis_url, proxy.port))
        async with open_memory(config, namespace) as m:
            await m.memory.store_fact("a", "before", "c")
            proxy.blackholed = True
            started = time.monotonic()
            with pytest.raises(ServerUnavailableError):
                await m.memory.store_fact("a", "during", "c")
            assert time.monotonic() - started < BOUND
            started = time.monotonic()
            with pytest.raises(ServerUnavailableError):
                await m.events("run").read_events()
            assert time.monotonic() - started < BOUND
            proxy.blackholed = False
            await m.memory.store_fact("a", "after", "c")
            facts = [f.fact for f in await m.memory.get_facts_by_category("c")]
    assert facts == ["before", "after"]


async def test_a_blackholed_postgres_fails_each_call_within_its_timeouts_and_work_resumes(
    servers: ServerUrls, namespace: str
) -> None:
    """PostgreSQL stops answering: read and write raise ServerUnavailableError in time."""
    async with BlackholeProxy(port_of(servers.database_url)).running() as proxy:
        config = short(
            redis_url=servers.redis_url, database_url=via(servers.database_url, proxy.port)
        )
        async with open_memory(config, namespace) as m:
            await m.db.write("doc", {"n": 1}, "a")
            proxy.blackholed = True
            started = time.monotonic()
            with pytest.raises(ServerUnavailableError):
                await m.db.read("doc")
            assert time.monotonic() - started < BOUND
            started = time.monotonic()
            with pytest.raises(ServerUnavailableError):
                await m.db.write("doc", {"n": 2}, "a")
            assert time.monotonic() - started < BOUND
            proxy.blackholed = False
            with anyio.fail_after(BOUND * 2):
                while True:  # the pool replaces the connections it gave up on
                    try:
                        doc = await m.db.read("doc")
                        break
                    except ServerUnavailableError:
                        await anyio.sleep(0.1)
    assert doc is not None
    assert doc.value == {"n": 1}


@through_proxy
async def test_a_lock_holder_cut_off_from_redis_knows_it_lost_the_lock_before_anyone_gets_it(
    servers: ServerUrls, namespace: str
) -> None:
    """The holder's local deadline passes before the server can grant the lock again."""
    async with BlackholeProxy(port_of(servers.redis_url)).running() as proxy:
        cut_off = short(via(servers.redis_url, proxy.port), servers.database_url)
        direct = short(servers.redis_url, servers.database_url)
        async with (
            open_memory(cut_off, namespace) as a,
            open_memory(direct, namespace) as b,
            a.memory.lock("customer-42", "holder", ttl_seconds=2) as held,
        ):
            proxy.blackholed = True
            lease = None
            with anyio.fail_after(10):
                while lease is None:
                    lease = await b.memory.acquire_lock("customer-42", "other", 2)
                    lost_when_granted = held.lost
                    await anyio.sleep(0.01)
            proxy.blackholed = False
    assert lost_when_granted
    assert lease.fencing_token is not None
    assert held.fencing_token is not None
    assert lease.fencing_token > held.fencing_token


async def test_a_wrong_postgres_password_is_a_config_error_without_the_secret(
    servers: ServerUrls, namespace: str
) -> None:
    """Refused credentials raise InvalidConfigError; the message never shows the password."""
    parts = urlsplit(servers.database_url)
    wrong = urlunsplit(parts._replace(netloc=f"nosuchuser:s3cret@{parts.hostname}:{parts.port}"))
    config = short(redis_url=servers.redis_url, database_url=wrong)
    with pytest.raises(InvalidConfigError) as caught:
        async with open_memory(config, namespace):
            pass
    assert "s3cret" not in str(caught.value)
    assert "nosuchuser" in str(caught.value)


@pytest.mark.parametrize("url", ["notaurl", "http://localhost:6379"])
async def test_a_bad_redis_url_is_a_config_error(url: str, namespace: str) -> None:
    """A string that is not a Redis URL is refused before anything connects."""
    with pytest.raises(InvalidConfigError, match="not a Redis URL"):
        async with open_memory(short(redis_url=url), namespace):
            pass


async def test_a_redis_that_is_down_is_reported_when_the_memory_opens(namespace: str) -> None:
    """Nothing listens on the port: open_memory raises ServerUnavailableError, naming it."""
    config = short(redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(
        ServerUnavailableError, match=r"cannot reach Redis at redis://127\.0\.0\.1:1/0"
    ):
        async with open_memory(config, namespace):
            pass


async def test_one_memory_uses_one_redis_client_for_every_store(
    servers: ServerUrls, namespace: str, redis_client: redis.Redis
) -> None:
    """Facts, status, locks and two streams, used at once, run on one named client."""
    config = MemoryConfig(redis_url=servers.redis_url, client_name="one-client-test")
    async with open_memory(config, namespace) as m:
        async with anyio.create_task_group() as tg:
            tg.start_soon(m.memory.store_fact, "a", "x", "c")
            tg.start_soon(m.memory.set_agent_status, "a", "working")
            tg.start_soon(m.memory.acquire_lock, "r", "a")
            tg.start_soon(m.events("one").read_events)
            tg.start_soon(m.events("two").read_events)
        clients = await redis_client.client_list()
    names = {c["name"] for c in clients if c["name"].startswith("one-client-test/")}
    assert len(names) == 1


ON_CLUSTER = os.environ.get("AGENTMEM_TEST_REDIS") == "cluster"


@pytest.mark.skipif(not ON_CLUSTER, reason="lists cluster nodes: runs in make test-cluster")
async def test_a_redis_url_listing_cluster_nodes_opens_through_one_that_answers(
    servers: ServerUrls, namespace: str
) -> None:
    """REDIS_URL may list several nodes; a process starts while the first listed one is down."""
    config = short(redis_url=f"redis://127.0.0.1:1/0, {servers.redis_url}")
    async with open_memory(config, namespace) as m:
        await m.memory.store_fact("a", "through the second node", "c")
        assert await m.memory.count_facts() == 1
        await m.drop()


@pytest.mark.skipif(ON_CLUSTER, reason="a standalone server: runs in make test")
async def test_a_redis_url_listing_a_standalone_server_among_others_is_a_config_error(
    servers: ServerUrls, namespace: str
) -> None:
    """Several URLs are cluster nodes or a mistake: two standalone servers are never mixed."""
    config = short(redis_url=f"redis://127.0.0.1:1/0,{servers.redis_url}")
    with pytest.raises(InvalidConfigError, match=r"lists 2 servers; .* is not a cluster node"):
        async with open_memory(config, namespace):
            pass


async def test_a_redis_url_whose_listed_nodes_are_all_down_names_the_first(
    namespace: str,
) -> None:
    """None of the listed nodes answers: ServerUnavailableError, passwords left out."""
    config = short(redis_url="redis://:pw1@127.0.0.1:1/0,redis://:pw2@127.0.0.1:2/0")
    with pytest.raises(ServerUnavailableError, match=r"127\.0\.0\.1:1/0") as caught:
        async with open_memory(config, namespace):
            pass
    assert "pw1" not in str(caught.value)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0,", ",redis://127.0.0.1:1/0"])
async def test_a_redis_url_with_an_empty_entry_is_a_config_error(url: str, namespace: str) -> None:
    with pytest.raises(InvalidConfigError, match="empty entry"):
        async with open_memory(short(redis_url=url), namespace):
            pass


async def test_a_call_on_a_pooled_connection_to_a_blackholed_postgres_waits_one_command_timeout(
    servers: ServerUrls, namespace: str
) -> None:
    """A connection is in the pool: the read gives up after its command timeout (2 s), without
    a second one spent on a cancel request the black hole swallows, nor a connect timeout."""
    async with BlackholeProxy(port_of(servers.database_url)).running() as proxy:
        config = MemoryConfig(
            servers.redis_url,
            via(servers.database_url, proxy.port),
            connect_timeout=30,
            command_timeout=2,
        )
        async with open_memory(config, namespace) as m:
            await m.db.read("doc")
            proxy.blackholed = True
            with anyio.fail_after(3), pytest.raises(ServerUnavailableError, match="in time"):
                await m.db.read("doc")
            proxy.blackholed = False
            await m.db.read("doc")
