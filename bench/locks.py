"""Locks: acquire+release per second; naive, redis-py's ``Lock`` and ours, uncontended and
with 8 contenders on one resource.

Ours takes its fencing token from PostgreSQL (as :func:`memory.open_memory` wires it), so a
cycle is three round trips: the lease (Redis), the token (PostgreSQL), the release (Redis).

redis-py's ``async with client.lock()`` is what a user would pick instead: one SET NX PX to
take the lock, one script to release it, no renewal and no fencing token; while the lock is
taken it polls every ``sleep`` seconds (0.1 s by default), so a holder that releases and
takes it again at once usually wins it back: contended, its throughput comes in bursts.
"""

from __future__ import annotations

import anyio

from agentmem.bench.harness import Context, Figures, compare, namespace
from agentmem.bench.naive import NaiveMemory
from agentmem.memory import RedisAgentMemory, SharedAgentDB

CONTENDERS = 8


async def locks(ctx: Context) -> Figures:
    ns = namespace()
    async with await SharedAgentDB.connect(ctx.database_url, ns) as db:
        try:
            memory = RedisAgentMemory(ctx.client, ns, fences=db.issue_fencing_token)
            return await _locks(ctx, memory)
        finally:
            await db.drop_all()


async def _locks(ctx: Context, memory: RedisAgentMemory) -> Figures:
    n, client = ctx.sizes.lock_ops, ctx.client
    per_contender = max(1, n // CONTENDERS)
    naive = NaiveMemory(client, namespace())
    redis_py_key = f"bench:{namespace()}:lock"

    async def naive_cycle() -> None:
        for _ in range(n):
            assert await naive.acquire_lock("r", "a")
            await naive.release_lock("r", "a")

    async def ours_cycle() -> None:
        for _ in range(n):
            async with memory.lock("r", "a"):
                pass

    async def redis_py_cycle() -> None:
        for _ in range(n):
            async with client.lock(redis_py_key, timeout=30):
                pass

    async def contended() -> None:
        async def contender(k: int) -> None:
            for _ in range(per_contender):
                async with memory.lock("hot", f"a-{k}", ttl_seconds=5, timeout=60):
                    pass

        async with anyio.create_task_group() as tg:
            for k in range(CONTENDERS):
                tg.start_soon(contender, k)

    async def redis_py_contended() -> None:
        async def contender() -> None:
            for _ in range(per_contender):
                async with client.lock(f"{redis_py_key}:hot", timeout=5, blocking_timeout=60):
                    pass

        async with anyio.create_task_group() as tg:
            for _ in range(CONTENDERS):
                tg.start_soon(contender)

    ctx.say(f"locks: {n:,} acquire+release cycles, naive, redis-py's and ours")
    times = await compare(
        {"naive": naive_cycle, "redis_py": redis_py_cycle, "ours": ours_cycle}, ctx.sizes.repeat
    )
    ctx.say(f"locks: {CONTENDERS} contenders, redis-py's and ours")
    contention = await compare(
        {"redis_py": redis_py_contended, "ours": contended}, ctx.sizes.repeat, warmup=False
    )
    cycles = per_contender * CONTENDERS
    return {
        "cycles": n,
        "naive_per_s": times["naive"].inverted(n).as_dict(),
        "redis_py_per_s": times["redis_py"].inverted(n).as_dict(),
        "uncontended_per_s": times["ours"].inverted(n).as_dict(),
        "redis_py_contended_per_s": contention["redis_py"].inverted(cycles).as_dict(),
        "contended_per_s": contention["ours"].inverted(cycles).as_dict(),
        "contenders": CONTENDERS,
    }
