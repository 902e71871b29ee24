"""Versioned documents against bare SQL on the same pool, and many writers racing ``update()``.

The floors: a bare primary-key SELECT of the same row (its value left as text), and a bare
INSERT of the same row into a plain table with the same columns and primary key, each
committed on its own (durable: fsync and synchronous commit are on). A versioned write checks
the fencing token and the expected version under the key's head-row lock and appends the next
version, in one round trip; a latest-version read orders by version.
"""

from __future__ import annotations

import json
import uuid

import anyio

from agentmem.bench.facts import fact_text
from agentmem.bench.harness import Context, Figures, compare, namespace, timed
from agentmem.memory import SharedAgentDB

READS = 500
BARE_TABLE = "bench_bare_inserts"


async def documents(ctx: Context) -> Figures:
    sizes = ctx.sizes
    async with await SharedAgentDB.connect(
        ctx.database_url, namespace(), max_size=sizes.writers + 2
    ) as db:
        pool, ns = db.pool, db.namespace
        await pool.execute(
            f"CREATE TABLE IF NOT EXISTS {BARE_TABLE} (LIKE documents INCLUDING ALL)"
        )

        async def writes() -> None:
            key = f"doc-{uuid.uuid4().hex[:8]}"
            for i in range(sizes.doc_writes):
                await db.write(key, {"n": i, "text": fact_text(i)}, "bench")

        async def bare_inserts() -> None:
            key = f"bare-{uuid.uuid4().hex[:8]}"
            for i in range(sizes.doc_writes):
                value = json.dumps({"n": i, "text": fact_text(i)})
                await pool.execute(
                    f"INSERT INTO {BARE_TABLE} (namespace, key, version, value, agent_id) "
                    "VALUES ($1, $2, $3, $4::jsonb, $5)",
                    ns,
                    key,
                    i + 1,
                    value,
                    "bench",
                )

        read_key = f"read-{uuid.uuid4().hex[:8]}"
        for i in range(3):
            latest = await db.write(read_key, {"n": i, "text": fact_text(i)}, "bench")

        async def reads() -> None:
            for _ in range(READS):
                await db.read(read_key)

        async def bare_selects() -> None:
            for _ in range(READS):
                await pool.fetchrow(
                    "SELECT value::text FROM documents "
                    "WHERE namespace = $1 AND key = $2 AND version = $3",
                    ns,
                    read_key,
                    latest.version,
                )

        ctx.say(f"documents: {sizes.doc_writes:,} versioned writes and bare INSERTs")
        write_times = await compare({"bare": bare_inserts, "writes": writes}, sizes.repeat)
        ctx.say(f"documents: {READS:,} latest-version reads and bare SELECTs")
        read_times = await compare({"bare": bare_selects, "reads": reads}, sizes.repeat)
        await pool.execute(f"DROP TABLE {BARE_TABLE}")

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
            "write_us": write_times["writes"].scaled(1e6 / sizes.doc_writes).as_dict(),
            "bare_insert_us": write_times["bare"].scaled(1e6 / sizes.doc_writes).as_dict(),
            "read_us": read_times["reads"].scaled(1e6 / READS).as_dict(),
            "bare_select_us": read_times["bare"].scaled(1e6 / READS).as_dict(),
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
