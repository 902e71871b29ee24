"""AGENTMEM_TENANT_WEIGHTS: read as written, refused with one line when malformed."""

from __future__ import annotations

import pytest

from agentmem.agents.settings import Settings
from agentmem.memory import InvalidConfigError


def test_tenant_weights_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """acme=2, beta=0.5 as written; a tenant not named has no entry (weight 1)."""
    monkeypatch.setenv("AGENTMEM_TENANT_WEIGHTS", "acme=2, beta=0.5")
    assert Settings(llm="stub").weights() == {"acme": 2.0, "beta": 0.5}


@pytest.mark.parametrize("weights", ["acme", "acme=0", "acme=two", "=2", "acme=2000"])
def test_malformed_tenant_weights_are_refused_with_one_line(
    monkeypatch: pytest.MonkeyPatch, weights: str
) -> None:
    """A weight that is missing, not a number, not above 0 or above 1000: InvalidConfigError."""
    monkeypatch.setenv("AGENTMEM_TENANT_WEIGHTS", weights)
    with pytest.raises(InvalidConfigError, match="AGENTMEM_TENANT_WEIGHTS") as caught:
        Settings(llm="stub").weights()
    assert "\n" not in str(caught.value)
