"""The other process of the handoff benchmark.

``python -m bench.consumer consume URL NS GROUP N`` and ``python -m bench.consumer pong URL NS N``.

``consume`` reads ``N`` events through a consumer group and prints, as JSON, the latency of
each from its publish (``sent_ns`` in the payload: CLOCK_MONOTONIC, shared by the processes of
one machine) to its receipt here. ``pong`` answers ping-pong requests to measure the bare round trip
between two processes through the same server.
"""

from __future__ import annotations

import json
import sys
import time

import anyio
import redis.asyncio as redis

from memory.events import EventStore


async def consume(url: str, namespace: str, group_name: str, expected: int) -> list[float]:
    client = redis.Redis.from_url(url)
    store = EventStore(client, namespace, "bench")
    group = store.group(group_name, "consumer-1")
    await group.ensure()
    print("ready", flush=True)
    latencies: list[float] = []
    while len(latencies) < expected:
        for delivery in await group.read(count=100, block_ms=1000):
            received = time.monotonic_ns()
            latencies.append((received - delivery.event.payload["sent_ns"]) / 1e9)
            await group.ack(delivery)
    await client.aclose()
    return latencies


async def pong(url: str, namespace: str, count: int) -> None:
    """Answer ``count`` pings: BRPOP a request, LPUSH it back (the bare two-process hop)."""
    client = redis.Redis.from_url(url)
    print("ready", flush=True)
    for _ in range(count):
        reply = await client.brpop([f"bench:{namespace}:ping"], timeout=10)
        if reply is None:
            break
        await client.lpush(f"bench:{namespace}:pong", reply[1])
    await client.aclose()


def main() -> None:
    mode, url, namespace = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "pong":
        anyio.run(pong, url, namespace, int(sys.argv[4]))
        return
    latencies = anyio.run(consume, url, namespace, sys.argv[4], int(sys.argv[5]))
    print(json.dumps(latencies), flush=True)


if __name__ == "__main__":
    main()
