"""A writer or reviewer waits for a section's facts that research stored but Redis does not
show yet (lost in a failover and being resent), instead of drafting from part of them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from agentmem.agents.runtime import Context
from agentmem.agents.settings import Settings
from agentmem.agents.stub_llm import StubLLM
from agentmem.devservers import ServerUrls
from agentmem.memory import DurableWriter, MemoryConfig, NewFact, WriteAheadLog, open_memory
from agentmem.protocol.events import RUN_STREAM
from agentmem.protocol.roles import Role
from tests.conditions import until

pytestmark = pytest.mark.anyio


@pytest.fixture
async def writer(servers: ServerUrls, namespace: str, tmp_path: Path) -> AsyncIterator[Context]:
    config = MemoryConfig(servers.redis_url, servers.database_url)
    async with open_memory(config, namespace) as m, WriteAheadLog(tmp_path / "w.db") as wal:
        events = m.events(RUN_STREAM)
        writer = DurableWriter(m.memory, events, wal)
        llm = StubLLM()
        yield Context("writer-1", Role.WRITER, Settings(), m.memory, events, m.db, llm, writer)


def fact(n: int) -> NewFact:
    return NewFact(f"Fact number {n}.", "locks", {"n": n}, f"fact-{n}")


async def test_facts_resent_while_waiting_are_all_read(
    writer: Context, caplog: pytest.LogCaptureFixture
) -> None:
    """Two of three facts are there; the third arrives while it waits: all three are returned."""
    caplog.set_level(logging.INFO, logger="agentmem.agents.runtime")
    await writer.memory.store_facts("research-1", [fact(1), fact(2)])
    got: list[int] = []

    async def read() -> None:
        got.extend(f.id for f in await writer.facts_of("locks", expected=3))

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        await until(lambda: "has 2 of its 3 facts; waiting" in caplog.text)
        assert got == []  # still waiting for the third
        await writer.memory.store_facts("research-1", [fact(3)])

    assert len(got) == 3


async def test_without_an_expected_count_the_facts_are_read_at_once(writer: Context) -> None:
    await writer.memory.store_facts("research-1", [fact(1)])
    with anyio.fail_after(1):
        assert len(await writer.facts_of("locks")) == 1
