"""Handoffs: publish in this process, receive in another through a consumer group.

Compared with the same handoff written with redis-py alone (XADD of the same fields, then
XREADGROUP and XACK in the other process: the floor), and with the bare round trip between
two processes through the same server (ping-pong over two lists). Producers are tasks of
this process; the consumer is a child process (``bench.consumer``), started fresh for each
run. The floor's runs and ours alternate, so a burst of load hurts both alike.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.abc
import redis.asyncio as redis

from agentmem.bench.consumer import bare_stream_key, ping_key, pong_key
from agentmem.bench.harness import Context, Figures, latency_summary, namespace
from agentmem.memory import AgentEvent, EventStore

ROOT = Path(__file__).resolve().parent.parent
PACE_SECONDS = 0.0005  # producers pause between publishes: this measures latency, not saturation
PRODUCERS = (1, 8)


async def handoffs(ctx: Context) -> Figures:
    """p50/p99/max of publish -> receipt at 1 and 8 producers, and the two-process ping-pong."""
    sizes = ctx.sizes
    results: Figures = {}
    pings: list[list[float]] = []
    for run in range(sizes.handoff_runs):
        ctx.say(f"handoffs: two-process ping-pong, run {run + 1}/{sizes.handoff_runs}")
        pings.append(await _pingpong(ctx.redis_url, sizes.handoffs))
    results["pingpong_rtt"] = latency_summary(pings)
    for producers in PRODUCERS:
        runs: list[list[float]] = []
        bare: list[list[float]] = []
        for run in range(sizes.handoff_runs):
            ctx.say(f"handoffs: {producers} producer(s), run {run + 1}/{sizes.handoff_runs}")
            bare.append(await _handoff_latencies(ctx.redis_url, sizes.handoffs, producers, True))
            runs.append(await _handoff_latencies(ctx.redis_url, sizes.handoffs, producers))
        results[f"producers_{producers}"] = latency_summary(runs)
        results[f"bare_producers_{producers}"] = latency_summary(bare)
    results["note"] = (
        "one-way publish -> receipt (EventStore.publish, a consumer group's read and ack in "
        "another process) vs the same with redis-py alone (XADD, XREADGROUP, XACK), and vs the "
        "full LPUSH/BRPOP round trip between two processes"
    )
    return results


async def _start(args: list[str]) -> anyio.abc.Process:
    process = await anyio.open_process(
        [sys.executable, "-m", "agentmem.bench.consumer", *args], cwd=ROOT, env=dict(os.environ)
    )
    assert process.stdout is not None
    line = await process.stdout.receive()
    if not line.startswith(b"ready"):
        msg = f"bench.consumer {args[0]} did not start: {line[:500]!r}"
        raise RuntimeError(msg)
    return process


async def _output(process: anyio.abc.Process) -> bytes:
    assert process.stdout is not None
    output = b""
    async for chunk in process.stdout:
        output += chunk
    await process.wait()
    await process.aclose()
    return output


async def _pingpong(url: str, count: int) -> list[float]:
    ns = namespace()
    process = await _start(["pong", url, ns, str(count)])
    client = redis.Redis.from_url(url)
    rtts = []
    try:
        for i in range(count):
            start = time.perf_counter()
            await client.lpush(ping_key(ns), i)
            await client.brpop([pong_key(ns)], timeout=10)
            rtts.append(time.perf_counter() - start)
    finally:
        await client.aclose()
        await _output(process)
    return rtts


async def _handoff_latencies(
    url: str, count: int, producers: int, bare: bool = False
) -> list[float]:
    """Latencies of ``count`` handoffs: ours, or (``bare``) with redis-py alone."""
    ns = namespace()
    process = await _start(["bare" if bare else "consume", url, ns, "bench", str(count)])
    client = redis.Redis.from_url(url)
    store = EventStore(client, ns, "bench")
    shares = [count // producers + (1 if n < count % producers else 0) for n in range(producers)]

    async def produce(n: int) -> None:
        for i in range(shares[n]):
            payload = {"producer": n, "i": i, "sent_ns": time.monotonic_ns()}
            if bare:  # the same fields ours sends, as they are
                fields = {
                    "type": "bench",
                    "agent": f"p-{n}",
                    "ts": datetime.now(UTC).isoformat(),
                    "payload": json.dumps(payload),
                }
                await client.xadd(bare_stream_key(ns), fields)  # type: ignore[arg-type]
            else:
                event = AgentEvent(event_type="bench", agent_id=f"p-{n}", payload=payload)
                await store.publish(event)
            await anyio.sleep(PACE_SECONDS)

    try:
        async with anyio.create_task_group() as tg:
            for n in range(producers):
                tg.start_soon(produce, n)
        with anyio.fail_after(60):
            output = await _output(process)
    finally:
        await client.delete(store.stream_key, bare_stream_key(ns))
        await client.aclose()
    latencies: list[float] = json.loads(output)
    return latencies
