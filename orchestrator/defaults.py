"""What a run works on when not told otherwise: the demo's topic and its notes.

Kept apart from :mod:`orchestrator.sources` (which imports the protocol and the memory layer)
so that ``agentmem --help`` can show them without importing either.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# The demo's notes ship inside the package (``sources/`` at the top of the checkout links here),
# so ``agentmem run`` works from an installed wheel; a wheel is always unpacked on disk.
PROJECT_SOURCES = Path(str(resources.files("agentmem.orchestrator") / "demo_sources"))
DEFAULT_TOPIC = "Shared memory for multi-agent systems: streams, locks, versions and recovery"
