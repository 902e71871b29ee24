"""DATABASE_READ_URL reaches the memory configuration, and stays out of reprs."""

from __future__ import annotations

import pytest

from agentmem.agents.runtime import agent_memory_config
from agentmem.agents.settings import Settings


def test_database_read_url_is_read_from_the_environment_into_the_memory_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The replica URL is optional, read once, handed to open_memory, never printed."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:secret@primary/db")
    monkeypatch.setenv("DATABASE_READ_URL", "postgresql://u:secret@replica/db")
    config = Settings().memory_config()
    assert config.database_read_url == "postgresql://u:secret@replica/db"
    assert "secret" not in repr(config)
    assert "secret" not in repr(Settings())


def test_without_database_read_url_every_read_uses_the_primary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unset, there is no replica pool to use."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@primary/db")
    monkeypatch.delenv("DATABASE_READ_URL", raising=False)
    assert Settings().memory_config().database_read_url is None


def test_agents_leave_the_read_replica_to_viewers(monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent's connections skip DATABASE_READ_URL: it opens no replica pool it never uses."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@primary/db")
    monkeypatch.setenv("DATABASE_READ_URL", "postgresql://u@replica/db")
    config = agent_memory_config(Settings(), "writer-2")
    assert config.database_read_url is None
    assert config.database_url == "postgresql://u@primary/db"
    assert config.client_name == "agentmem:writer-2"
