"""Prompts are text files in this package (``agents/prompts/<name>.md``), one per agent.

They are read with :mod:`importlib.resources`, so they are found in a checkout and in an
installed wheel alike. (``prompts/`` at the top of the checkout links here.)
"""

from __future__ import annotations

import functools
from importlib import resources

from agentmem.memory import AgentMemoryError


@functools.cache
def load_prompt(name: str) -> str:
    """The prompt ``<name>.md`` of this package."""
    path = resources.files(__name__).joinpath(f"{name}.md")
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        msg = f"cannot read the prompt {name}.md ({path}): {exc.strerror}; reinstall agentmem"
        raise AgentMemoryError(msg) from exc
