"""Acknowledged writes survive a crash of the server that acknowledged them.

Many writers run at once; when enough writes have been acknowledged, the server is crashed
(PostgreSQL: immediate stop, SIGQUIT to the postmaster; Redis: SIGKILL) while writes are in
flight, then restarted on the same data. Every write that returned must be there exactly once.
A write cut off by the crash returned nothing and may or may not have landed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import asyncpg
import pytest
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from agentmem.devservers import EmbeddedPostgres, EmbeddedRedis
from agentmem.memory import MemoryConfig, ServerUnavailableError, open_memory
from agentmem.memory.agent_memory import RedisAgentMemory
from agentmem.memory.durable import DurableWriter
from agentmem.memory.events import EventStore
from agentmem.memory.facts import NewFact
from agentmem.memory.shared_db import SharedAgentDB
from agentmem.memory.wal import WriteAheadLog

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

WRITERS = 20
CRASH_AFTER = 3_000  # acknowledged writes before the crash
NO_RETRY = Retry(NoBackoff(), 0)  # a refused connection fails the call at once


async def write_until_crash(
    write: Callable[[int, int], Awaitable[None]],
    crash: Callable[[], None],
    *,
    writes_after_crash: int = 0,
) -> None:
    """``WRITERS`` tasks call ``write(writer, n)``; ``crash`` runs mid-stream.

    The crash is triggered by the ``CRASH_AFTER``-th acknowledged write, in a thread, while
    the other writers keep writing. A writer stops at its first "unreachable" error, or after
    ``writes_after_crash`` more writes once the crash is over.
    """
    acknowledged = 0
    crashed = anyio.Event()

    async def crash_now() -> None:
        await anyio.to_thread.run_sync(crash)
        crashed.set()

    async def writer(w: int) -> None:
        nonlocal acknowledged
        after = 0
        for n in range(1_000_000):
            try:
                await write(w, n)
            except Exception as exc:
                if not isinstance(exc, ServerUnavailableError):
                    raise
                return
            acknowledged += 1
            if acknowledged == CRASH_AFTER:
                tg.start_soon(crash_now)
            if crashed.is_set():
                after += 1
                if after > writes_after_crash:
                    return

    async with anyio.create_task_group() as tg:
        for w in range(WRITERS):
            tg.start_soon(writer, w)


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="agentmem-crash-"))
    folder.chmod(0o755)
    yield folder / "pg"
    shutil.rmtree(folder, ignore_errors=True)


async def crash_postgres_under_writes(server: EmbeddedPostgres) -> tuple[int, int]:
    """Write documents, crash ``server`` mid-stream, restart it; (acknowledged, lost)."""
    acked: dict[str, tuple[int, int]] = {}  # payload -> (writer, version)
    pool = await asyncpg.create_pool(server.url, min_size=WRITERS, max_size=WRITERS)
    db = SharedAgentDB(pool, "crash")
    await db.migrate()

    async def write(w: int, n: int) -> None:
        doc = await db.write(f"doc-{w}", {"payload": f"{w}-{n}"}, f"writer-{w}")
        acked[f"{w}-{n}"] = (w, doc.version)

    await write_until_crash(write, server.crash)
    pool.terminate()
    server.start()

    async with await SharedAgentDB.connect(server.url, "crash") as after:
        stored = Counter[str]()
        versions: dict[str, int] = {}
        for w in range(WRITERS):
            for doc in await after.history(f"doc-{w}"):
                stored[doc.value["payload"]] += 1
                versions[doc.value["payload"]] = doc.version
    assert all(count == 1 for count in stored.values())
    assert all(versions.get(p) == v for p, (_, v) in acked.items() if p in stored)
    return len(acked), len(set(acked) - set(stored))


async def test_every_acknowledged_document_write_survives_a_postgres_crash(
    pg_dir: Path,
) -> None:
    """SIGQUIT to the postmaster under 20 concurrent writers: every acknowledged version is kept."""
    server = EmbeddedPostgres(pg_dir)
    server.start()
    try:
        acknowledged, lost = await crash_postgres_under_writes(server)
    finally:
        server.destroy()
    assert acknowledged >= CRASH_AFTER
    assert lost == 0


def new_fact(w: int, n: int) -> NewFact:
    return NewFact(f"fact {w}-{n}", f"c{w % 4}", {"w": w, "n": n}, f"k-{w}-{n}")


async def stored_fact_texts(url: str, namespace: str) -> Counter[str]:
    """How many times each fact text is stored in the namespace."""
    texts = Counter[str]()
    async with open_memory(MemoryConfig(redis_url=url), namespace) as m:
        memory = m.memory
        for category in await memory.list_categories():
            texts.update(f.fact for f in await memory.get_facts_by_category(category))
    return texts


async def test_every_fact_redis_acknowledged_survives_its_sigkill(tmp_path: Path) -> None:
    """SIGKILL of redis-server under 20 concurrent writers: with ``appendfsync always`` the
    append-only file keeps them all. (With ``everysec`` a slow disk makes the server postpone
    its writes to the file while it keeps replying, so a process crash can lose some: see
    devservers.redis_server.)"""
    server = EmbeddedRedis(tmp_path / "redis", appendfsync="always")
    server.start()
    acked: set[str] = set()
    try:
        client = redis.Redis.from_url(server.url, retry=NO_RETRY)
        memory = RedisAgentMemory(client, "crash")

        async def write(w: int, n: int) -> None:
            [fact_id] = await memory.store_facts(f"writer-{w}", [new_fact(w, n)])
            assert fact_id > 0
            acked.add(f"fact {w}-{n}")

        await write_until_crash(write, server.crash)
        await client.aclose()
        server.start()
        stored = await stored_fact_texts(server.url, "crash")
    finally:
        server.stop()
    assert len(acked) >= CRASH_AFTER
    assert acked - set(stored) == set()
    assert all(count == 1 for count in stored.values())


async def test_every_fact_written_through_the_log_lands_once_after_a_redis_sigkill(
    tmp_path: Path,
) -> None:
    """SIGKILL of redis-server under 20 logging writers: after restart every fact is there once.
    A writer drops an entry from its log once a server without replicas has it, so what that
    server's own persistence loses is lost: ``appendfsync always`` loses nothing to a crash
    (``everysec`` may, on a slow disk: devservers.redis_server)."""
    server = EmbeddedRedis(tmp_path / "redis", appendfsync="always")
    server.start()
    client = redis.Redis.from_url(server.url, socket_connect_timeout=0.5, retry=NO_RETRY)
    memory, events = RedisAgentMemory(client, "crash-wal"), EventStore(client, "crash-wal")
    wals = [WriteAheadLog(tmp_path / f"wal-{w}.db") for w in range(WRITERS)]
    writers = [DurableWriter(memory, events, wal) for wal in wals]
    returned: set[str] = set()

    async def write(w: int, n: int) -> None:
        await writers[w].store_facts(f"writer-{w}", [new_fact(w, n)])
        returned.add(f"fact {w}-{n}")

    try:
        await write_until_crash(write, server.crash, writes_after_crash=5)
        assert sum([await w.pending() for w in writers]) >= WRITERS * 5
        server.start()
        assert [await w.flush() for w in writers] == [0] * WRITERS
        stored = await stored_fact_texts(server.url, "crash-wal")
    finally:
        for wal in wals:
            wal.close()
        await client.aclose()
        server.stop()
    assert len(returned) >= CRASH_AFTER
    assert set(stored) == returned
    assert all(count == 1 for count in stored.values())
