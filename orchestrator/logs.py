"""What the agents' JSON-line logs say about a run: how long each agent waited for the LLM."""

from __future__ import annotations

import json
import re
from pathlib import Path

_LLM_CALL = re.compile(r"^llm_call task=\S+ seconds=([0-9.]+)$")


def llm_seconds(log_dir: Path) -> dict[str, float]:
    """Seconds each agent spent in LLM calls, from ``<agent>.log`` files in ``log_dir``."""
    totals: dict[str, float] = {}
    for path in sorted(log_dir.glob("*.log")):
        total = 0.0
        for line in path.read_text(errors="replace").splitlines():
            try:
                message = json.loads(line).get("msg", "")
            except (ValueError, AttributeError):
                continue
            if match := _LLM_CALL.match(message):
                total += float(match.group(1))
        totals[path.stem] = total
    return totals
