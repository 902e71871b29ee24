"""Locks: acquire+release per second, naive vs ours uncontended, and ours with 8 contenders."""

from __future__ import annotations

import anyio

from bench.harness import Context, Figures, compare, namespace
from bench.naive import NaiveMemory
from memory import RedisAgentMemory

CONTENDERS = 8


async def locks(ctx: Context) -> Figures:
    n = ctx.sizes.lock_ops
    per_contender = max(1, n // CONTENDERS)
    naive = NaiveMemory(ctx.client, namespace())
    memory = RedisAgentMemory(ctx.client, namespace())

    async def naive_cycle() -> None:
        for _ in range(n):
            assert await naive.acquire_lock("r", "a")
            await naive.release_lock("r", "a")

    async def ours_cycle() -> None:
        for _ in range(n):
            lease = await memory.acquire_lock("r", "a")
            assert lease
            await memory.release_lock(lease)

    async def contended() -> None:
        async def contender(k: int) -> None:
            for _ in range(per_contender):
                async with memory.lock("hot", f"a-{k}", ttl_seconds=5, timeout=60):
                    pass

        async with anyio.create_task_group() as tg:
            for k in range(CONTENDERS):
                tg.start_soon(contender, k)

    ctx.say(f"locks: {n:,} acquire+release cycles, naive and ours, and {CONTENDERS} contenders")
    times = await compare(
        {"naive": naive_cycle, "ours": ours_cycle, "contended": contended}, ctx.sizes.repeat
    )
    return {
        "cycles": n,
        "naive_per_s": times["naive"].inverted(n).as_dict(),
        "uncontended_per_s": times["ours"].inverted(n).as_dict(),
        "contended_per_s": times["contended"].inverted(per_contender * CONTENDERS).as_dict(),
        "contenders": CONTENDERS,
    }
