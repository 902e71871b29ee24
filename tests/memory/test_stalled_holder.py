"""A lock holder that stalls past its TTL (SIGSTOP) cannot clobber the next holder's write."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
import redis.asyncio as redis

from agentmem.devservers import ServerUrls
from agentmem.memory.agent_memory import RedisAgentMemory
from agentmem.memory.shared_db import SharedAgentDB
from tests.conditions import eventually

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


def spawn_holder(servers: ServerUrls, namespace: str) -> subprocess.Popen[str]:
    args = ["tests.memory.stalled_holder", servers.redis_url, servers.database_url, namespace]
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


async def test_a_holder_stopped_past_its_ttl_has_its_late_write_fenced_off(
    servers: ServerUrls, redis_client: redis.Redis, namespace: str
) -> None:
    """SIGSTOP the holder past its TTL; after SIGCONT its write is refused and it sees the loss."""
    holder = spawn_holder(servers, namespace)
    assert holder.stdin is not None
    assert holder.stdout is not None
    try:
        first_token = int(holder.stdout.readline().split()[1])
        holder.send_signal(signal.SIGSTOP)
        async with await SharedAgentDB.connect(servers.database_url, namespace) as db:
            memory = RedisAgentMemory(redis_client, namespace, fences=db.issue_fencing_token)
            # granted once its lease has expired, as it cannot renew
            lease = await eventually(lambda: memory.acquire_lock("doc", "next-1", ttl_seconds=10))
            assert lease
            assert lease.fencing_token is not None
            assert lease.fencing_token > first_token
            await db.write(
                "doc", "next holder's write", "next-1", fencing_token=lease.fencing_token
            )

            holder.send_signal(signal.SIGCONT)
            holder.stdin.write("go\n")
            holder.stdin.flush()
            started = time.monotonic()
            result = await anyio.to_thread.run_sync(holder.stdout.readline)

            assert result.split() == ["rejected", "lost=True"]
            assert time.monotonic() - started < 10
            history = await db.history("doc")
            assert [d.value for d in history] == ["next holder's write"]
    finally:
        holder.send_signal(signal.SIGCONT)
        holder.kill()
        holder.wait()
        holder.stdin.close()
        holder.stdout.close()
