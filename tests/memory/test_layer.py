"""``open_memory``: one opener hands its settings to every store of a namespace."""

from __future__ import annotations

import pytest

from agentmem.devservers import ServerUrls
from agentmem.memory import (
    AgentEvent,
    AgentMemoryError,
    InvalidIdError,
    InvalidValueError,
    Limits,
    MemoryConfig,
    open_memory,
)

pytestmark = pytest.mark.anyio


async def test_the_opener_hands_its_size_caps_to_every_store(
    servers: ServerUrls, namespace: str
) -> None:
    """Caps set once in MemoryConfig are enforced by facts, events and documents alike."""
    small = Limits(fact_text_bytes=10, event_payload_bytes=20, document_value_bytes=30)
    config = MemoryConfig(servers.redis_url, servers.database_url, limits=small)
    async with open_memory(config, namespace) as m:
        with pytest.raises(InvalidValueError, match="fact"):
            await m.memory.store_fact("a", "x" * 11, "c")
        with pytest.raises(InvalidValueError, match="payload"):
            await m.events("run").publish(
                AgentEvent(event_type="t", agent_id="a", payload={"k": "x" * 20})
            )
        with pytest.raises(InvalidValueError):
            await m.db.write("doc", "x" * 40, "a")
        await m.memory.store_fact("a", "short", "c")
        assert await m.memory.count_facts() == 1
        assert await m.db.read("doc") is None


async def test_without_a_database_the_documents_say_how_to_configure_one(
    servers: ServerUrls, namespace: str
) -> None:
    """A Redis-only memory works, and asking it for documents names DATABASE_URL."""
    async with open_memory(MemoryConfig(servers.redis_url), namespace) as m:
        await m.memory.store_fact("a", "only redis", "c")
        with pytest.raises(AgentMemoryError, match="DATABASE_URL"):
            _ = m.db


async def test_a_scoped_view_reaches_another_namespace_on_the_same_connections(
    servers: ServerUrls, namespace: str
) -> None:
    """scope() reads and writes another namespace; it owns nothing, so the opener still works."""
    config = MemoryConfig(servers.redis_url, servers.database_url)
    other = f"{namespace}-other"
    async with open_memory(config, namespace) as m:
        view = m.scope(other)
        await view.memory.store_fact("a", "in the other namespace", "c")
        await view.db.write("doc", {"n": 1}, "a")
        assert await m.memory.count_facts() == 0
        assert await m.db.read("doc") is None
        await view.aclose()  # a view closes nothing of its opener's
        assert await m.memory.count_facts() == 0
        async with open_memory(config, other) as o:
            assert await o.memory.count_facts() == 1
            document = await o.db.read("doc")
            assert document is not None
            assert document.value == {"n": 1}
            await o.drop()
        with pytest.raises(InvalidIdError):
            m.scope("")
