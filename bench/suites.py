"""The benchmarks: each one measures the naive way, this project's way, and the floor.

Every suite takes the servers and the sizes and returns plain figures (JSON-ready). They run
in the same process, one after another, on the same servers, so their ratios are meaningful
even on a noisy machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import redis.asyncio as redis

from bench.harness import Sample, percentile, rate, repeat, timed
from bench.naive import NaiveMemory
from memory.agent_event import AgentEvent
from memory.agent_memory import RedisAgentMemory
from memory.events import EventStore
from memory.facts import NewFact
from memory.shared_db import SharedAgentDB

ROOT = Path(__file__).resolve().parent.parent
Figures = dict[str, Any]


@dataclass(frozen=True)
class Sizes:
    repeat: int = 5
    facts: int = 2000
    batch: int = 500
    categories: tuple[int, ...] = (1_000, 10_000, 100_000)
    naive_category_max: int = 10_000
    handoffs: int = 2000
    lock_ops: int = 1000
    doc_writes: int = 500
    writers: int = 16
    updates_each: int = 100
    demo: bool = True

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            repeat=2,
            facts=50,
            batch=25,
            categories=(100, 300),
            naive_category_max=300,
            handoffs=50,
            lock_ops=30,
            doc_writes=20,
            writers=4,
            updates_each=5,
            demo=False,
        )


def _ns() -> str:
    return f"bench-{uuid.uuid4().hex[:10]}"


def _fact(i: int) -> str:
    return f"Fact number {i}: a sentence of typical length about something the sources state."


async def floor(client: redis.Redis, sizes: Sizes) -> Figures:
    """The bare cost of the hardware: one PING round trip, and one pipelined batch."""

    async def pings() -> None:
        for _ in range(200):
            await client.ping()

    async def pipelined() -> None:
        async with client.pipeline(transaction=False) as pipe:
            for _ in range(sizes.batch):
                pipe.ping()
            await pipe.execute()

    ping = await repeat(pings, sizes.repeat)
    batch = await repeat(pipelined, sizes.repeat)
    return {
        "ping_rtt_us": Sample([v / 200 * 1e6 for v in ping.values]).as_dict(),
        "pipelined_batch_ms": Sample([v * 1e3 for v in batch.values]).as_dict(),
        "batch_size": sizes.batch,
    }


async def facts_store(client: redis.Redis, sizes: Sizes) -> Figures:
    """Facts per second: naive (3 round trips each), ours one at a time, ours in batches."""
    n = sizes.facts

    async def naive_single() -> None:
        naive = NaiveMemory(client, _ns())
        for i in range(n):
            await naive.store_fact("bench", _fact(i), "c", {"source": "s.md", "n": i})

    async def ours_single() -> None:
        memory = RedisAgentMemory(client, _ns())
        for i in range(n):
            await memory.store_fact("bench", _fact(i), "c", {"source": "s.md", "n": i})

    async def ours_batch() -> None:
        memory = RedisAgentMemory(client, _ns())
        facts = [NewFact(_fact(i), "c", {"source": "s.md", "n": i}) for i in range(n)]
        for start in range(0, n, sizes.batch):
            await memory.store_facts("bench", facts[start : start + sizes.batch])

    return {
        "facts": n,
        "naive_per_s": (await rate(naive_single, n, sizes.repeat)).as_dict(),
        "single_per_s": (await rate(ours_single, n, sizes.repeat)).as_dict(),
        "batch_per_s": (await rate(ours_batch, n, sizes.repeat)).as_dict(),
        "batch_size": sizes.batch,
    }


async def category_read(client: redis.Redis, sizes: Sizes) -> Figures:
    """Time to read a whole category, by size: naive (1 + N round trips), ours, floor."""
    results: Figures = {}
    for size in sizes.categories:
        ns = _ns()
        memory = RedisAgentMemory(client, ns)
        facts = [NewFact(_fact(i), "c", {"source": "s.md", "n": i}) for i in range(size)]
        for start in range(0, size, 5000):
            await memory.store_facts("bench", facts[start : start + 5000])
        record_key = memory.keys.fact_records()
        ids = [str(i) for i in range(1, size + 1)]

        async def ours(memory: RedisAgentMemory = memory, size: int = size) -> None:
            assert len(await memory.get_facts_by_category("c")) == size

        async def floor_read(key: str = record_key, ids: list[str] = ids) -> None:
            await client.hmget(key, ids)  # the same bytes, fetched raw, nothing parsed

        row: Figures = {
            "ours_ms": Sample(
                [v * 1e3 for v in (await repeat(ours, sizes.repeat)).values]
            ).as_dict(),
            "floor_ms": Sample(
                [v * 1e3 for v in (await repeat(floor_read, sizes.repeat)).values]
            ).as_dict(),
        }
        if size <= sizes.naive_category_max:
            naive = NaiveMemory(client, ns)
            for i in range(size):
                await naive.store_fact("bench", _fact(i), "c", {"source": "s.md", "n": i})

            async def naive_read(naive: NaiveMemory = naive, size: int = size) -> None:
                assert len(await naive.get_facts_by_category("c")) == size

            naive_times = await repeat(naive_read, max(1, sizes.repeat // 2))
            row["naive_ms"] = Sample([v * 1e3 for v in naive_times.values]).as_dict()
        results[str(size)] = row
        await client.delete(record_key, memory.keys.category("c"))
    return results


async def handoffs(url: str, sizes: Sizes) -> Figures:
    """Publish in this process, receive in another through a consumer group; and ping-pong."""
    results: Figures = {"pingpong_rtt_us": await _pingpong(url, sizes.handoffs)}
    for producers in (1, 8):
        latencies = await _handoff_latencies(url, sizes.handoffs, producers)
        results[f"producers_{producers}"] = {
            "count": len(latencies),
            "p50_us": percentile(latencies, 50) * 1e6,
            "p99_us": percentile(latencies, 99) * 1e6,
            "max_us": max(latencies) * 1e6,
            "samples_us": [v * 1e6 for v in latencies],
        }
    return results


async def _start(args: list[str]) -> anyio.abc.Process:
    process = await anyio.open_process(
        [sys.executable, "-m", "bench.consumer", *args], cwd=ROOT, env=dict(os.environ)
    )
    assert process.stdout is not None
    line = await process.stdout.receive()
    assert line.startswith(b"ready"), line
    return process


async def _pingpong(url: str, count: int) -> Figures:
    ns = _ns()
    process = await _start(["pong", url, ns, str(count)])
    client = redis.Redis.from_url(url)
    rtts = []
    for i in range(count):
        start = time.perf_counter()
        await client.lpush(f"bench:{ns}:ping", i)
        await client.brpop([f"bench:{ns}:pong"], timeout=10)
        rtts.append(time.perf_counter() - start)
    await client.aclose()
    await process.wait()
    await process.aclose()
    return {"p50_us": percentile(rtts, 50) * 1e6, "p99_us": percentile(rtts, 99) * 1e6}


async def _handoff_latencies(url: str, count: int, producers: int) -> list[float]:
    ns = _ns()
    process = await _start(["consume", url, ns, "bench", str(count)])
    client = redis.Redis.from_url(url)
    store = EventStore(client, ns, "bench")
    per_producer = count // producers

    async def produce(n: int) -> None:
        for i in range(per_producer):
            payload = {"producer": n, "i": i, "sent_ns": time.monotonic_ns()}
            await store.publish(AgentEvent(event_type="bench", agent_id=f"p-{n}", payload=payload))
            await anyio.sleep(0.0005)  # paced: this measures latency, not saturation

    async with anyio.create_task_group() as tg:
        for n in range(producers):
            tg.start_soon(produce, n)
    remaining = count - per_producer * producers
    for i in range(remaining):
        payload = {"producer": 0, "i": -i, "sent_ns": time.monotonic_ns()}
        await store.publish(AgentEvent(event_type="bench", agent_id="p-0", payload=payload))
    assert process.stdout is not None
    output = b""
    async for chunk in process.stdout:
        output += chunk
    await process.wait()
    await process.aclose()
    await client.aclose()
    latencies: list[float] = json.loads(output)
    return latencies


async def locks(client: redis.Redis, sizes: Sizes) -> Figures:
    """Acquire+release per second: naive vs ours uncontended, and ours with 8 contenders."""
    n = sizes.lock_ops
    naive = NaiveMemory(client, _ns())
    memory = RedisAgentMemory(client, _ns())

    async def naive_cycle() -> None:
        for _ in range(n):
            await naive.acquire_lock("r", "a")
            await naive.release_lock("r", "a")

    async def ours_cycle() -> None:
        for _ in range(n):
            lease = await memory.acquire_lock("r", "a")
            assert lease
            await memory.release_lock(lease)

    async def contended() -> None:
        async def contender(k: int) -> None:
            for _ in range(n // 8):
                async with memory.lock("hot", f"a-{k}", ttl_seconds=5, timeout=60):
                    pass

        async with anyio.create_task_group() as tg:
            for k in range(8):
                tg.start_soon(contender, k)

    return {
        "naive_per_s": (await rate(naive_cycle, n, sizes.repeat)).as_dict(),
        "uncontended_per_s": (await rate(ours_cycle, n, sizes.repeat)).as_dict(),
        "contended_8_per_s": (await rate(contended, n // 8 * 8, sizes.repeat)).as_dict(),
    }


async def documents(dsn: str, sizes: Sizes) -> Figures:
    """Versioned writes per second, and 16 writers racing update() on one key."""
    async with await SharedAgentDB.connect(dsn, _ns(), max_size=sizes.writers + 2) as db:

        async def writes() -> None:
            key = f"doc-{uuid.uuid4().hex[:6]}"
            for i in range(sizes.doc_writes):
                await db.write(key, {"n": i, "text": _fact(i)}, "bench")

        write_rate = await rate(writes, sizes.doc_writes, sizes.repeat)

        key = f"counter-{uuid.uuid4().hex[:6]}"
        db.conflicts = 0

        async def writer(k: int) -> None:
            for _ in range(sizes.updates_each):
                await db.update(key, lambda v: (v or 0) + 1, f"w-{k}", attempts=1000)

        async def race() -> None:
            async with anyio.create_task_group() as tg:
                for k in range(sizes.writers):
                    tg.start_soon(writer, k)

        elapsed = await timed(race)
        final = await db.read(key)
        commits = sizes.writers * sizes.updates_each
        return {
            "uncontended_writes_per_s": write_rate.as_dict(),
            "contended": {
                "writers": sizes.writers,
                "updates_each": sizes.updates_each,
                "expected": commits,
                "final_value": final.value if final else None,
                "versions": final.version if final else 0,
                "lost_updates": commits - (final.value if final else 0),
                "goodput_per_s": commits / elapsed,
                "retries_per_commit": db.conflicts / commits,
                "seconds": elapsed,
            },
        }


def demo(redis_url: str, database_url: str, out: Path) -> Figures:
    """The whole demo with the stub LLM, in separate processes: wall time per handoff."""
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "AGENTMEM_LLM": "stub",
        "AGENTMEM_DATA_DIR": str(out / "demo-data"),
        "AGENTMEM_REPORTS_DIR": str(out / "demo-reports"),
    }
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "run", "--quiet"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        return {"error": result.stderr[-500:]}
    report = Path(result.stdout.strip().splitlines()[-1].removeprefix("Report: "))
    record = json.loads(report.with_suffix(".json").read_text())
    handoff_types = {"section.assigned", "section.drafted", "section.revision_requested"}
    handoffs_count = sum(1 for e in record["events"] if e["event_type"] in handoff_types)
    agents_seconds = record["timings_seconds"]["agents"]
    return {
        "wall_seconds": wall,
        "timings_seconds": record["timings_seconds"],
        "handoffs": handoffs_count,
        "agents_seconds_per_handoff": agents_seconds / max(1, handoffs_count),
        "note": "stub LLM: its calls take microseconds, so agent time is all non-LLM work",
    }
