"""A role's work queue: tenants' lanes taken round-robin, a bell that wakes idle readers."""

from __future__ import annotations

import os

import anyio
import pytest

from agentmem.memory.connections import RedisClient
from agentmem.memory.work_queue import Ticket, WorkQueue

pytestmark = pytest.mark.anyio


async def test_a_light_tenants_ticket_is_taken_before_a_heavy_tenants_backlog(
    redis_client: RedisClient, namespace: str
) -> None:
    """Ten tickets of one tenant (over four shards) pushed before one of another: the other's
    comes second, not eleventh (tenants take turns; a backlog waits in its own lanes)."""
    queue = WorkQueue(redis_client, f"q-{namespace}", shards=4)
    heavy = [Ticket(f"{namespace}-heavy-{n}", "writer", "heavy") for n in range(10)]
    await queue.push(heavy, "test")
    await queue.push([Ticket(f"{namespace}-light", "writer", "light")], "test")
    reader = queue.reader("worker-1")
    order = []
    for _ in range(4):
        taken = await reader.take()
        assert taken is not None
        group, delivery = taken
        order.append(Ticket.of(delivery).tenant)
        await group.ack(delivery)
    assert order[:2] in (["heavy", "light"], ["light", "heavy"])
    assert order[2:] == ["heavy", "heavy"]


async def test_a_wait_on_a_shard_returns_when_a_ticket_is_pushed_to_it(
    redis_client: RedisClient, namespace: str
) -> None:
    """A reader that found nothing waits on the shard's bell, which rings on the next push;
    the ticket is then there to take."""
    queue = WorkQueue(redis_client, f"q-{namespace}", shards=1)
    reader = queue.reader("worker-1")
    assert await reader.take() is None
    rang: list[str] = []
    async with anyio.create_task_group() as tg:

        async def wait() -> None:
            rang.append(await queue.wait(0, "0-0", 60_000))

        tg.start_soon(wait)
        await queue.push([Ticket(f"{namespace}-run", "writer", "acme")], "test")
    assert len(rang) == 1
    assert rang[0] != "0-0"
    taken = await reader.take()
    assert taken is not None
    assert Ticket.of(taken[1]) == Ticket(f"{namespace}-run", "writer", "acme")


async def test_a_tenant_of_weight_two_takes_two_turns_to_anothers_one(
    redis_client: RedisClient, namespace: str
) -> None:
    """Six tickets each of tenants a (weight 2) and b (weight 1): of the first six taken, four
    are a's and two b's, interleaved (a, b, a, a, b, a)."""
    queue = WorkQueue(redis_client, f"q-{namespace}", shards=2)
    for tenant in ("a", "b"):
        tickets = [Ticket(f"{namespace}-{tenant}-{n}", "writer", tenant) for n in range(6)]
        await queue.push(tickets, "test")
    reader = queue.reader("worker-1", weights={"a": 2})
    order = []
    for _ in range(6):
        taken = await reader.take()
        assert taken is not None
        group, delivery = taken
        order.append(Ticket.of(delivery).tenant)
        await group.ack(delivery)
    assert order == ["a", "b", "a", "a", "b", "a"]


async def _reads(client: RedisClient) -> int:
    """XREADGROUP and XAUTOCLAIM calls the server has answered so far."""
    stats = await client.info("commandstats")
    return sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("xreadgroup", "xautoclaim"))


@pytest.mark.skipif(
    os.environ.get("AGENTMEM_TEST_REDIS") == "cluster", reason="counts one server's calls"
)
async def test_an_idle_pass_reads_no_lane_once_every_ticket_is_acknowledged(
    redis_client: RedisClient, namespace: str
) -> None:
    """Eight tenants' tickets taken and acknowledged: a pass that finds nothing asks which
    lanes hold tickets (one pipelined round trip) and reads none of the eight lanes."""
    queue = WorkQueue(redis_client, f"q-{namespace}", shards=4)
    tenants = [f"t{n}" for n in range(8)]
    await queue.push([Ticket(f"{namespace}-{t}", "writer", t) for t in tenants], "test")
    reader = queue.reader("worker-1")
    for _ in tenants:
        taken = await reader.take()
        assert taken is not None
        await taken[0].ack(taken[1])
    before = await _reads(redis_client)

    assert await reader.take() is None

    assert await _reads(redis_client) - before == 0


async def test_a_dead_workers_ticket_is_taken_by_another_after_the_reclaim_time(
    redis_client: RedisClient, namespace: str
) -> None:
    """A ticket taken and never acknowledged (its worker died) is taken by another worker's
    reader once it was idle for the reclaim time, though no ticket waits undelivered."""
    queue = WorkQueue(redis_client, f"q-{namespace}", shards=2, reclaim_idle_ms=200)
    await queue.push([Ticket(f"{namespace}-run", "writer", "acme")], "test")
    first = await queue.reader("worker-1").take()
    assert first is not None
    other = queue.reader("worker-2")
    with anyio.fail_after(30):
        while (taken := await other.take()) is None:
            await anyio.sleep(0.05)
    assert taken[1].entry_id == first[1].entry_id
