"""scripts/moved_modules.py follows modules that moved to their new homes, and only those."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
# moved_modules: skip (this file holds the old names on purpose)

OLD = '''"""The payloads of :mod:`agents.protocol` (``agents/protocol.py``)."""
from agentmem.agents import ROUTES, RUN_STREAM, EventType, Settings, new_event
from agentmem.agents import Role  # the roles
from agentmem.agents.protocol import RunRequested, SourceDoc
import agentmem.agents.roles as roles
from agentmem.agents import zygote, roles as r


def f() -> None:
    from agentmem.agents import (
        Settings,
        SectionState,
    )
    monkeypatch.setattr("agentmem.agents.protocol.RUN_STREAM", "x")
kept = ["agentmem.agents.protocols", "myagents.protocol", "agentmem.agents.runtime"]
'''

NEW = '''"""The payloads of :mod:`protocol.events` (``protocol/events.py``)."""
from agentmem.agents import Settings
from agentmem.protocol import ROUTES, RUN_STREAM, EventType, new_event
from agentmem.protocol import Role  # the roles
from agentmem.protocol.events import RunRequested, SourceDoc
import agentmem.protocol.roles as roles
from agentmem.agents import zygote
from agentmem.protocol import roles as r


def f() -> None:
    from agentmem.agents import Settings
    from agentmem.protocol import SectionState
    monkeypatch.setattr("agentmem.protocol.events.RUN_STREAM", "x")
kept = ["agentmem.agents.protocols", "myagents.protocol", "agentmem.agents.runtime"]
'''


def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "moved_modules", ROOT / "scripts/moved_modules.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_imports_names_and_paths_of_moved_modules_are_rewritten_and_nothing_else() -> None:
    """Moved modules and re-exported names go to their new homes; other names stay."""
    assert script().rewrite(OLD, python=True) == NEW


def test_a_second_run_changes_nothing() -> None:
    """Text already naming the new homes is left as it is (the lead re-runs it after merges)."""
    assert script().rewrite(NEW, python=True) == NEW


def test_the_checkout_names_no_moved_module() -> None:
    """No file of the checkout still names an old module: the script has nothing left to do."""
    module = script()
    stale = [
        str(path.relative_to(ROOT))
        for path in module.files(ROOT)
        if module.SKIP_MARK not in (text := path.read_text(encoding="utf-8"))
        and path.name != "moved_modules.py"
        and module.rewrite(text, python=path.suffix == ".py") != text
    ]
    assert stale == []
