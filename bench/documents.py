"""Versioned documents: writes per second, and many writers racing ``update()`` on one key."""

from __future__ import annotations

import uuid

import anyio

from bench.facts import fact_text
from bench.harness import Context, Figures, compare, namespace, timed
from memory import SharedAgentDB


async def documents(ctx: Context) -> Figures:
    sizes = ctx.sizes
    async with await SharedAgentDB.connect(
        ctx.database_url, namespace(), max_size=sizes.writers + 2
    ) as db:

        async def writes() -> None:
            key = f"doc-{uuid.uuid4().hex[:8]}"
            for i in range(sizes.doc_writes):
                await db.write(key, {"n": i, "text": fact_text(i)}, "bench")

        ctx.say(f"documents: {sizes.doc_writes:,} versioned writes, {sizes.repeat} times")
        write_times = await compare({"writes": writes}, sizes.repeat)

        key = f"counter-{uuid.uuid4().hex[:8]}"
        commits = sizes.writers * sizes.updates_each

        async def writer(k: int) -> None:
            for _ in range(sizes.updates_each):
                await db.update(key, lambda v: (v or 0) + 1, f"w-{k}", attempts=10_000)

        async def race() -> None:
            async with anyio.create_task_group() as tg:
                for k in range(sizes.writers):
                    tg.start_soon(writer, k)

        ctx.say(f"documents: {sizes.writers} writers x {sizes.updates_each} update() on one key")
        db.conflicts = 0
        elapsed = await timed(race)
        final = await db.read(key)
        value = final.value if final else 0
        return {
            "uncontended_writes_per_s": write_times["writes"].inverted(sizes.doc_writes).as_dict(),
            "contended": {
                "writers": sizes.writers,
                "updates_each": sizes.updates_each,
                "expected": commits,
                "final_value": value,
                "versions": final.version if final else 0,
                "lost_updates": commits - value,
                "goodput_per_s": commits / elapsed,
                "retries_per_commit": db.conflicts / commits,
                "seconds": elapsed,
            },
        }
