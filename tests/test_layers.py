"""The application's packages import one way: each only from the layers below it.

The layers, bottom to top (docs/architecture.md, "Layers"): the memory layer; the run
protocol; the agents; the local servers; the orchestrator; the service; the web view; the MCP
server (which uses the web view's door); the command line; chaos and bench. A module may import
its own package and any package below it, never one above: every ``import`` statement counts,
at module level, inside a function or under ``TYPE_CHECKING``, and so does a module named in a
string (the lazy ``_HOMES`` tables, ``importlib.import_module``). A subprocess started with
``-m agentmem.x`` is not an import, and a string naming a command to run is allowed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "agentmem"

LAYERS = [
    "memory",
    "protocol",
    "agents",
    "devservers",
    "orchestrator",
    "service",
    "web",
    "mcp",
    "cli",
    "chaos",
    "bench",
]
_MODULE = re.compile(r"agentmem\.(\w+)(?:\.\w+)*")


def _named_in_code(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) for each ``agentmem.*`` module the code imports or will import."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "agentmem":  # from agentmem import memory
                names = [f"agentmem.{alias.name}" for alias in node.names]
            found += [(node.lineno, name) for name in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.Call) and _called(node) == "import_module" and node.args:
            found += _strings(node.args[0])
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_HOMES" for t in node.targets
        ):
            found += _strings(node.value)
    return found


def _called(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _strings(node: ast.AST) -> list[tuple[int, str]]:
    return [
        (n.lineno, n.value)
        for n in ast.walk(node)
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def upward_imports() -> list[str]:
    """Every import of a module from a layer above the importing module's, as ``file:line``."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    wrong = []
    for package in LAYERS:
        folder = (ROOT / package).resolve()
        for path in sorted(folder.rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for line, module in _named_in_code(tree):
                match = _MODULE.fullmatch(module)
                if match is None or match.group(1) not in rank:
                    continue
                target = match.group(1)
                if rank[target] > rank[package]:
                    where = f"{folder.name}/{path.relative_to(folder)}:{line}"
                    wrong.append(f"{where} ({package}) imports {module} ({target})")
    return wrong


def test_every_package_of_agentmem_has_a_layer() -> None:
    """A new package must be given its place before its imports can be checked."""
    packages = {p.name for p in ROOT.iterdir() if p.is_symlink()}
    assert packages == set(LAYERS)


def test_no_package_imports_a_layer_above_its_own() -> None:
    """Imports point one way: from the command line down to the memory layer, never back."""
    assert upward_imports() == []
