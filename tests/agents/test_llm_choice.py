"""The stub-or-endpoint choice is made in one function, and everything else asks it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "agentmem"
APP = ["agents", "protocol", "orchestrator", "service", "web", "mcp", "cli", "chaos", "bench"]
HOME = "agents/llm_choice.py"


def _choices(path: Path) -> list[str]:
    """Where ``path`` builds an LLM itself or reads the ``llm`` setting to pick one (the
    settings' own check that an endpoint is configured, ``check_llm``, is validation)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    validation = {
        id(n)
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef) and f.name == "check_llm"
        for n in ast.walk(f)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in validation:
            continue
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in {"StubLLM", "OpenAILLM", "from_settings"}:
                found.append(f"{name}() at line {node.lineno}")
        if isinstance(node, ast.Compare) and any(
            isinstance(n, ast.Attribute) and n.attr == "llm" for n in ast.walk(node)
        ):
            found.append(f"a test of .llm at line {node.lineno}")
    return found


def test_only_llm_choice_builds_an_llm_or_reads_the_llm_setting() -> None:
    """No other module of the app builds the stub or the client, or tests ``settings.llm``."""
    elsewhere = {}
    for package in APP:
        folder = (ROOT / package).resolve()
        for path in sorted(folder.rglob("*.py")):
            where = f"{folder.name}/{path.relative_to(folder)}"
            if where == HOME:
                continue
            found = _choices(path)
            if found:
                elsewhere[where] = found
    assert elsewhere == {}


def test_the_choice_builds_what_it_says_and_imports_openai_only_for_an_endpoint() -> None:
    """Stub without a key or endpoint (openai not imported); the client with an endpoint."""
    code = """
import sys
from agentmem.agents.llm_choice import make_llm, uses_stub
from agentmem.agents.settings import Settings
from agentmem.agents.stub_llm import StubLLM
stub = Settings(llm="auto", openai_api_key=None, openai_base_url=None)
assert uses_stub(stub) and isinstance(make_llm(stub), StubLLM)
assert "openai" not in sys.modules
real = Settings(llm="auto", openai_api_key=None, openai_base_url="http://127.0.0.1:9/v1")
assert not uses_stub(real) and type(make_llm(real)).__name__ == "OpenAILLM"
assert uses_stub(Settings(llm="stub", openai_base_url="http://127.0.0.1:9/v1"))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
