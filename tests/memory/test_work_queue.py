"""A role's work queue: tenants' lanes taken round-robin, a bell that wakes idle readers."""

from __future__ import annotations

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
