"""The other process of the handoff benchmark (``python -m agentmem.bench.consumer MODE ...``).

``consume URL NS GROUP N``: reads ``N`` events through a consumer group and prints, as JSON,
the latency of each from its publish (``sent_ns`` in the payload, CLOCK_MONOTONIC, which every
process of one Linux machine shares) to its receipt here.

``bare URL NS GROUP N``: the same with redis-py alone (XREADGROUP, then XACK per entry, the
payload's JSON parsed for its ``sent_ns``): the floor a handoff is measured against.

``pong URL NS N``: answers ``N`` pings (BRPOP a request, LPUSH it back), so the other side can
time the bare round trip between two processes through the same server.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import anyio
import redis.asyncio as redis

from agentmem.memory import EventStore


def ping_key(namespace: str) -> str:
    return f"bench:{namespace}:ping"


def pong_key(namespace: str) -> str:
    return f"bench:{namespace}:pong"


async def consume(url: str, namespace: str, group_name: str, expected: int) -> list[float]:
    client = redis.Redis.from_url(url)
    try:
        group = EventStore(client, namespace, "bench").group(group_name, "consumer-1")
        await group.ensure()
        print("ready", flush=True)
        latencies: list[float] = []
        while len(latencies) < expected:
            for delivery in await group.read(count=100, block_ms=5000):
                received = time.monotonic_ns()
                latencies.append((received - delivery.event.payload["sent_ns"]) / 1e9)
                await group.ack(delivery)
        return latencies
    finally:
        await client.aclose()


def bare_stream_key(namespace: str) -> str:
    return f"bench:{namespace}:bare"


async def consume_bare(url: str, namespace: str, group_name: str, expected: int) -> list[float]:
    client = redis.Redis.from_url(url)
    key = bare_stream_key(namespace)
    try:
        await client.xgroup_create(key, group_name, "0", mkstream=True)
        print("ready", flush=True)
        latencies: list[float] = []
        while len(latencies) < expected:
            reply: Any = await client.xreadgroup(
                group_name, "consumer-1", {key: ">"}, count=100, block=5000
            )
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    received = time.monotonic_ns()
                    sent_ns = json.loads(fields[b"payload"])["sent_ns"]
                    latencies.append((received - sent_ns) / 1e9)
                    await client.xack(key, group_name, entry_id)
        return latencies
    finally:
        await client.aclose()


async def pong(url: str, namespace: str, count: int) -> None:
    client = redis.Redis.from_url(url)
    try:
        print("ready", flush=True)
        for _ in range(count):
            reply = await client.brpop([ping_key(namespace)], timeout=10)
            if reply is None:
                return
            await client.lpush(pong_key(namespace), reply[1])
    finally:
        await client.aclose()


def main() -> None:
    mode, url, namespace = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "pong":
        anyio.run(pong, url, namespace, int(sys.argv[4]))
    else:
        run = consume_bare if mode == "bare" else consume
        latencies = anyio.run(run, url, namespace, sys.argv[4], int(sys.argv[5]))
        print(json.dumps(latencies), flush=True)


if __name__ == "__main__":
    main()
