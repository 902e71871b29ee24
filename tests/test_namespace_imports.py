"""scripts/namespace_imports.py moves old top-level imports under agentmem, and only those."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
# namespace_imports: skip (this file holds old-style imports on purpose)

OLD = '''"""Run it with ``python -m agents ROLE``."""
import memory
import agentmem_mcp
from memory.keys import validate_id
from orchestrator import cli
import agents.__main__, orchestrator.run

    from web.door import principal  # indented, as under TYPE_CHECKING
logger = logging.getLogger("agents")
HOME = {"Role": "protocol.roles", "patch": "memory.retry.set_testing:x"}
command = [sys.executable, "-m", "cli.main", "run"]
title = ["python", "-m", "agents", role]
found = cmdline[i + 1] == "agents"
data = resources.files("orchestrator")
kept = {"service.instance.id": 1, "process": "orchestrator", "x": "agents"}
'''

NEW = '''"""Run it with ``python -m agentmem.agents ROLE``."""
from agentmem import memory
from agentmem import mcp as agentmem_mcp
from agentmem.memory.keys import validate_id
from agentmem.orchestrator import cli
import agentmem.agents.__main__, agentmem.orchestrator.run

    from agentmem.web.door import principal  # indented, as under TYPE_CHECKING
logger = logging.getLogger("agentmem.agents")
HOME = {"Role": "agentmem.protocol.roles", "patch": "agentmem.memory.retry.set_testing:x"}
command = [sys.executable, "-m", "agentmem.cli.main", "run"]
title = ["python", "-m", "agentmem.agents", role]
found = cmdline[i + 1] == "agentmem.agents"
data = resources.files("agentmem.orchestrator")
kept = {"service.instance.id": 1, "process": "orchestrator", "x": "agents"}
'''


def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "namespace_imports", ROOT / "scripts/namespace_imports.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_old_style_imports_and_module_names_are_rewritten_and_nothing_else() -> None:
    """Imports, ``-m`` arguments and module names in strings move; other strings stay."""
    left: list[str] = []
    assert script().rewrite_python(OLD, ROOT, left) == NEW
    assert left == []


def test_a_second_run_changes_nothing() -> None:
    """Text already in the new style is left as it is (the lead re-runs it after merges)."""
    left: list[str] = []
    assert script().rewrite_python(NEW, ROOT, left) == NEW


def test_markdown_and_makefiles_get_python_dash_m_and_from_imports() -> None:
    """``python -m chaos`` and ``from memory import`` in text; prose about memory stays."""
    text = "Run `python -m chaos --history`; reads from memory.\nfrom memory import open_memory\n"
    expected = (
        "Run `python -m agentmem.chaos --history`; reads from memory.\n"
        "from agentmem.memory import open_memory\n"
    )
    assert script().rewrite_text(text) == expected
    assert script().rewrite_text(expected) == expected
