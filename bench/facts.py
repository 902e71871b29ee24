"""Facts: storing them (one at a time, in batches) and reading a whole category, by size."""

from __future__ import annotations

from agentmem.bench.harness import Context, Figures, Work, compare, namespace
from agentmem.bench.naive import NaiveMemory
from agentmem.memory import NewFact, RedisAgentMemory
from agentmem.memory.facts import parse_records

CATEGORY = "c"
LOAD_CHUNK = 5000


def fact_text(i: int) -> str:
    return f"Fact number {i}: a sentence of typical length about something the sources state."


def metadata(i: int) -> dict[str, object]:
    return {"source": "sources/streams.md", "n": i}


async def store(ctx: Context) -> Figures:
    """Facts per second: naive (3 round trips each), ours one at a time, ours in batches;
    and as many PINGs, interleaved with them, for the round trip they are measured against."""
    client, n, batch = ctx.client, ctx.sizes.facts, ctx.sizes.batch

    async def pings() -> None:
        for _ in range(n):
            await client.ping()

    async def naive_single() -> None:
        naive = NaiveMemory(client, namespace())
        for i in range(n):
            await naive.store_fact("bench", fact_text(i), CATEGORY, metadata(i))

    async def ours_single() -> None:
        memory = RedisAgentMemory(client, namespace())
        for i in range(n):
            await memory.store_fact("bench", fact_text(i), CATEGORY, metadata(i))

    async def ours_batch() -> None:
        memory = RedisAgentMemory(client, namespace())
        facts = [NewFact(fact_text(i), CATEGORY, metadata(i)) for i in range(n)]
        for start in range(0, n, batch):
            await memory.store_facts("bench", facts[start : start + batch])

    ctx.say(f"facts: storing {n:,} facts, naive and ours, {ctx.sizes.repeat} times")
    times = await compare(
        {"ping": pings, "naive": naive_single, "single": ours_single, "batch": ours_batch},
        ctx.sizes.repeat,
    )
    return {
        "facts": n,
        "ping_us": times["ping"].scaled(1e6 / n).as_dict(),
        "single_us": times["single"].scaled(1e6 / n).as_dict(),
        "batch_size": batch,
        "naive_per_s": times["naive"].inverted(n).as_dict(),
        "single_per_s": times["single"].inverted(n).as_dict(),
        "batch_per_s": times["batch"].inverted(n).as_dict(),
    }


async def _load(ctx: Context, ns: str, size: int, *, naive: bool) -> RedisAgentMemory:
    """Store ``size`` facts in one category, the project's way and (if asked) the article's."""
    memory = RedisAgentMemory(ctx.client, ns)
    facts = [NewFact(fact_text(i), CATEGORY, metadata(i)) for i in range(size)]
    for start in range(0, size, LOAD_CHUNK):
        await memory.store_facts("bench", facts[start : start + LOAD_CHUNK])
    if naive:  # the article's layout, loaded in pipelined chunks: setup is not what is timed
        layout = NaiveMemory(ctx.client, ns)
        for start in range(1, size + 1, LOAD_CHUNK):
            async with ctx.client.pipeline(transaction=False) as pipe:
                for i in range(start, min(start + LOAD_CHUNK, size + 1)):
                    record = {"fact": fact_text(i), "agent_id": "bench", "category": CATEGORY}
                    record.update({k: str(v) for k, v in metadata(i).items()})
                    pipe.hset(layout.fact_key(i), mapping=record)  # type: ignore[arg-type]
                    pipe.sadd(layout.category_key(CATEGORY), i)
                await pipe.execute()
    return memory


def _decode(raw: list[bytes | str | None]) -> int:
    """What turning raw records into typed facts costs the client (the library's own parser)."""
    return len(parse_records(range(1, len(raw) + 1), raw))


async def read_category(ctx: Context) -> Figures:
    """Time to read a whole category, by size: naive (1 + N round trips), ours, the floor.

    The floor is one HMGET of the very same records: every byte the read needs, in one round
    trip, left undecoded. ``decode_ms`` is the client CPU time to decode those bytes into
    typed records, which ours does and the floor does not.
    """
    results: Figures = {}
    naive_ms_per_fact = 0.0
    for size in ctx.sizes.categories:
        ns = namespace()
        with_naive = size <= ctx.sizes.naive_category_max
        ctx.say(f"category: loading {size:,} facts")
        memory = await _load(ctx, ns, size, naive=with_naive)
        records_key, ids = memory.keys.fact_records(), [str(i) for i in range(1, size + 1)]
        raw: list[bytes | str | None] = []

        async def ours(memory: RedisAgentMemory = memory, size: int = size) -> None:
            facts = await memory.get_facts_by_category(CATEGORY)
            assert len(facts) == size, (len(facts), size)

        async def floor(
            key: str = records_key, ids: list[str] = ids, raw: list[bytes | str | None] = raw
        ) -> None:
            raw[:] = await ctx.client.hmget(key, ids)

        async def decode(raw: list[bytes | str | None] = raw) -> None:
            _decode(raw)

        fns: dict[str, Work] = {"ours": ours, "floor": floor, "decode": decode}
        if with_naive:
            naive = NaiveMemory(ctx.client, ns)

            async def naive_read(naive: NaiveMemory = naive, size: int = size) -> None:
                assert len(await naive.get_facts_by_category(CATEGORY)) == size

            fns["naive"] = naive_read
        ctx.say(f"category: reading {size:,} facts, {ctx.sizes.repeat} times")
        times = await compare(fns, ctx.sizes.repeat)
        row: Figures = {
            f"{name}_ms": sample.scaled(1e3).as_dict() for name, sample in times.items()
        }
        if with_naive:
            naive_ms_per_fact = row["naive_ms"]["median"] / size
        else:
            row["naive_skipped"] = (
                f"naive read of {size:,} facts not run (one round trip per fact; "
                f"~{naive_ms_per_fact * size / 1e3:,.1f} s per repetition by extrapolation)"
            )
        results[str(size)] = row
        await ctx.client.delete(records_key, memory.keys.category(CATEGORY))
        if with_naive:
            await _drop_naive(ctx, ns, size)
    return results


async def _drop_naive(ctx: Context, ns: str, size: int) -> None:
    layout = NaiveMemory(ctx.client, ns)
    keys = [layout.fact_key(i) for i in range(1, size + 1)]
    for start in range(0, size, LOAD_CHUNK):
        await ctx.client.delete(*keys[start : start + LOAD_CHUNK])
    await ctx.client.delete(layout.category_key(CATEGORY))
