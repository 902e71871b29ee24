"""The run-wide semaphore: a cap across processes, dead holders expire, stalled ones know."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from agentmem.devservers import ServerUrls
from agentmem.memory import (
    InvalidValueError,
    MemoryConfig,
    PermitLostError,
    Semaphore,
    SemaphoreTimeoutError,
)
from agentmem.memory.connections import RedisClient, connect_redis
from agentmem.memory.keys import Keyspace
from tests.conditions import eventually
from tests.memory.blackhole import BlackholeProxy
from tests.memory.test_boundary import port_of, via

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]

# A proxy in front of one node cannot cut off a cluster client, which talks to every node.
through_proxy = pytest.mark.skipif(
    os.environ.get("AGENTMEM_TEST_REDIS") == "cluster",
    reason="the black-hole proxy fronts one standalone server",
)


def semaphore(client: RedisClient, namespace: str, limit: int, ttl: float = 30.0) -> Semaphore:
    return Semaphore(client, Keyspace(namespace), "llm", limit, ttl_seconds=ttl)


def holders_process(servers: ServerUrls, namespace: str, *args: object) -> list[str]:
    module = "tests.memory.semaphore_holders"
    return [sys.executable, "-m", module, servers.redis_url, namespace, *map(str, args)]


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals that overlap at one instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    at_once = most = 0
    for _, step in edges:
        at_once += step
        most = max(most, at_once)
    return most


async def test_holders_in_three_processes_never_exceed_the_limit(
    servers: ServerUrls, namespace: str
) -> None:
    """Three processes of five tasks each, limit 3: holds never overlap more than 3 deep."""
    command = holders_process(servers, namespace, 3, 5, 30)
    intervals: list[tuple[float, float]] = []

    async def holders() -> None:
        done = await anyio.run_process(command, cwd=ROOT)
        lines = done.stdout.decode().splitlines()
        intervals.extend((float(a), float(b)) for a, b in (line.split() for line in lines))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(holders)

    assert len(intervals) == 3 * 5 * 3
    assert most_at_once(intervals) <= 3


async def test_clients_are_granted_only_up_to_the_limit(
    servers: ServerUrls, namespace: str
) -> None:
    """Two permits on two clients fill a limit of 2; the third is refused until one is back."""
    config = MemoryConfig(redis_url=servers.redis_url)
    clients = [await connect_redis(config) for _ in range(3)]
    try:
        a, b, c = (semaphore(client, namespace, 2) for client in clients)
        first = await a.try_acquire("writer-1")
        assert first is not None
        assert await b.try_acquire("writer-2") is not None
        assert await c.try_acquire("review-1") is None
        assert sorted(await c.holders()) == ["writer-1", "writer-2"]

        assert await a.release(first)
        assert await c.try_acquire("review-1") is not None
    finally:
        for client in clients:
            await client.aclose()


async def test_a_killed_holders_place_frees_when_its_lease_ends(
    servers: ServerUrls, redis_client: RedisClient, namespace: str
) -> None:
    """SIGKILL a process holding the only permit (TTL 1 s): it is free again after the TTL."""
    async with await anyio.open_process(
        holders_process(servers, namespace, 1, 0, 1), cwd=ROOT
    ) as process:
        assert process.stdout is not None
        assert (await process.stdout.receive()).startswith(b"held")
        process.send_signal(signal.SIGKILL)
        await process.wait()
        ours = semaphore(redis_client, namespace, 1)
        assert await ours.holders() == ["doomed-1"]
        assert await ours.try_acquire("next-1") is None

        await eventually(lambda: ours.try_acquire("next-1"))  # once the killed one's TTL ends
        assert await ours.holders() == ["next-1"]


async def test_releasing_an_ended_permit_leaves_the_new_holder_alone(
    redis_client: RedisClient, namespace: str
) -> None:
    """A permit whose lease ended is not released twice: the holder after it keeps its place."""
    short = semaphore(redis_client, namespace, 1, ttl=0.2)
    stale = await short.try_acquire("slow-1")
    assert stale is not None
    await eventually(lambda: short.try_acquire("next-1"))  # once slow-1's TTL ends

    assert not await short.release(stale)
    assert not await short.renew(stale)
    assert await short.holders() == ["next-1"]
    assert await short.try_acquire("third-1") is None


async def test_a_held_permit_is_renewed_past_its_ttl(
    redis_client: RedisClient, namespace: str
) -> None:
    """A block that holds for three TTLs keeps its place; it is free once the block ends."""
    ours = semaphore(redis_client, namespace, 1, ttl=0.3)
    async with ours.hold("long-1"):
        for _ in range(3):
            await anyio.sleep(0.3)
            assert await ours.try_acquire("other-1") is None
    assert await ours.holders() == []


async def test_waiting_for_a_full_semaphore_gives_up_at_the_timeout(
    redis_client: RedisClient, namespace: str
) -> None:
    """hold() on a full semaphore raises SemaphoreTimeoutError naming it, once the wait ends."""
    ours = semaphore(redis_client, namespace, 1)
    assert await ours.try_acquire("busy-1") is not None
    with pytest.raises(SemaphoreTimeoutError, match="'llm'"):
        async with ours.hold("late-1", timeout=0.2):
            pass


async def test_a_limit_below_one_is_refused(redis_client: RedisClient, namespace: str) -> None:
    """A limit of 0 (or not an integer) is a one-line InvalidValueError, before any call."""
    for limit in (0, -1, 1.5, True):
        with pytest.raises(InvalidValueError, match="limit"):
            semaphore(redis_client, namespace, limit)  # type: ignore[arg-type]


async def test_a_holder_stopped_past_its_ttl_knows_its_permit_is_lost(
    servers: ServerUrls, redis_client: RedisClient, namespace: str
) -> None:
    """SIGSTOP the only holder (TTL 1 s): another gets the place, and after SIGCONT the
    stalled one reports its permit lost and its check() raises."""
    command = holders_process(servers, namespace, 1, -1, 1)
    async with await anyio.open_process(command, cwd=ROOT) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        lines = BufferedByteReceiveStream(process.stdout)
        assert await lines.receive_until(b"\n", 1000) == b"held"
        process.send_signal(signal.SIGSTOP)
        try:
            ours = semaphore(redis_client, namespace, 1)
            with anyio.fail_after(10):
                while (permit := await ours.try_acquire("next-1")) is None:
                    await anyio.sleep(0.05)  # the server, polled
        finally:
            process.send_signal(signal.SIGCONT)
        await process.stdin.send(b"go\n")
        with anyio.fail_after(10):
            output = await lines.receive_until(b"\n", 1000)
        await process.wait()

    assert output.split() == [b"lost=True", b"check=raised"]
    assert await ours.holders() == ["next-1"]
    permit.check()


@through_proxy
async def test_a_holder_cut_off_from_redis_knows_its_permit_is_lost_before_anyone_gets_it(
    servers: ServerUrls, namespace: str
) -> None:
    """The holder's local deadline passes before the server can grant its place again."""
    async with BlackholeProxy(port_of(servers.redis_url)).running() as proxy:
        cut_off = await connect_redis(MemoryConfig(redis_url=via(servers.redis_url, proxy.port)))
        direct = await connect_redis(MemoryConfig(redis_url=servers.redis_url))
        try:
            async with semaphore(cut_off, namespace, 1, ttl=1).hold("holder") as held:
                held.check()
                proxy.blackholed = True
                other = semaphore(direct, namespace, 1, ttl=1)
                with anyio.fail_after(10):
                    while await other.try_acquire("other") is None:
                        await anyio.sleep(0.005)  # the server, polled
                lost_when_granted = held.lost
                proxy.blackholed = False
                with pytest.raises(PermitLostError, match="'holder'"):
                    held.check()
        finally:
            await cut_off.aclose()
            await direct.aclose()
    assert lost_when_granted
