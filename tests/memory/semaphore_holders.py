"""Semaphore holders in a process of their own, for the cross-process tests.

``python -m tests.memory.semaphore_holders REDIS_URL NAMESPACE LIMIT TASKS TTL``:
``TASKS`` tasks each hold a permit of the semaphore ``llm`` for 50 ms, three times over, and
print each hold as ``<start> <end>`` on the system-wide monotonic clock. With ``TASKS`` 0, one
permit is taken, ``held`` is printed, and the process waits to be killed. With ``TASKS`` -1
(the stall test), one permit is taken, ``held`` is printed, and after a line on stdin the
process prints ``lost=<bool> check=<raised|passed>`` for its permit.
"""

from __future__ import annotations

import sys
import time

import anyio

from agentmem.memory import MemoryConfig, PermitLostError, Semaphore, open_memory


async def stalled(semaphore: Semaphore) -> None:
    """Hold a permit, wait for a line on stdin (a stall happens meanwhile), say what it knows."""
    async with semaphore.hold("stalled-1") as permit:
        print("held", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        lost = permit.lost
        try:
            permit.check()
            outcome = "passed"
        except PermitLostError:
            outcome = "raised"
        print(f"lost={lost} check={outcome}", flush=True)


async def main(redis_url: str, namespace: str, limit: int, tasks: int, ttl: float) -> None:
    async with open_memory(MemoryConfig(redis_url=redis_url), namespace) as m:
        semaphore = m.semaphore("llm", limit, ttl_seconds=ttl)
        if tasks < 0:
            await stalled(semaphore)
            return
        if tasks == 0:
            async with semaphore.hold("doomed-1"):
                print("held", flush=True)
                await anyio.sleep_forever()

        async def holder(n: int) -> None:
            for _ in range(3):
                async with semaphore.hold(f"holder-{n}", timeout=60):
                    start = time.monotonic()
                    await anyio.sleep(0.05)
                    print(f"{start} {time.monotonic()}", flush=True)

        async with anyio.create_task_group() as tg:
            for n in range(tasks):
                tg.start_soon(holder, n)


if __name__ == "__main__":
    redis_url, namespace, limit, tasks, ttl = sys.argv[1:6]
    anyio.run(main, redis_url, namespace, int(limit), int(tasks), float(ttl))
