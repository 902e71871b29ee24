"""Prompts are text files in ``prompts/``, one per agent, read at run time."""

from __future__ import annotations

import functools
from pathlib import Path

from memory.errors import AgentMemoryError

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"


@functools.cache
def load_prompt(name: str) -> str:
    """The prompt ``prompts/<name>.md``."""
    path = PROMPTS_DIR / f"{name}.md"
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        msg = f"cannot read the prompt {path}: {exc.strerror}; is the checkout complete?"
        raise AgentMemoryError(msg) from exc
