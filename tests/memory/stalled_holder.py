"""A lock holder in a process of its own, for the SIGSTOP test.

``python -m tests.memory.stalled_holder REDIS_URL DATABASE_URL NAMESPACE``.

Takes the lock ``doc`` (TTL 1 s), prints ``locked <token>``, waits for a line on stdin, then
writes ``doc`` with its fencing token (as a holder that does not know it stalled would) and
prints the outcome and whether its lock block noticed the lease was lost.
"""

from __future__ import annotations

import sys

import anyio

from agentmem.memory import MemoryConfig, StaleFencingTokenError, open_memory


async def main(redis_url: str, database_url: str, namespace: str) -> None:
    config = MemoryConfig(redis_url=redis_url, database_url=database_url)
    async with (
        open_memory(config, namespace) as m,
        m.memory.lock("doc", "stalled-1", ttl_seconds=1) as held,
    ):
        db = m.db
        print(f"locked {held.fencing_token}", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        try:
            await db.write("doc", "late write", "stalled-1", fencing_token=held.fencing_token)
            outcome = "written"
        except StaleFencingTokenError:
            outcome = "rejected"
        await anyio.sleep(0.5)  # one renewal period: the block finds the lease gone
        print(f"{outcome} lost={held.lost}", flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3])
