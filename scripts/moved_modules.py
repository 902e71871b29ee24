"""Rewrite references to modules that moved (``agentmem.agents.protocol``, now elsewhere).

When a module moves to another package, every import of it, every dotted name of it in a
string or a docstring, and every path to its file in the docs must follow. :data:`MODULES`
maps each old module to its new one, and :data:`NAMES` each name that a package re-exported
(``from agentmem.agents import EventType``) to the package that exports it now. No shim stays
at the old place (a re-export would be a second home), so code still written against the old
names, on a branch merged later, fails to import until this script has run over it.

The script is deterministic and idempotent: no new name contains an old one, so a second run
changes nothing, and a run after a merge rewrites only what the merged branches added.

What it rewrites:

- in ``*.py`` files, with the ``ast`` module: ``from PACKAGE import NAME, ...`` where a NAME
  moved (a re-exported name, or a moved module imported by its name): the statement is split
  into one per home, ``as`` kept (``from agentmem.agents import roles`` ->
  ``from agentmem.protocol import roles``);
- in every text file (code, docstrings, Markdown, YAML, the Makefile): the old dotted name
  (``agentmem.agents.protocol``, and ``agents.protocol`` as docstrings write it) and the old
  file path (``agents/protocol.py``), where the old name is not part of a longer one.

CHANGELOG.md is history and stays as it is, and so does a file that contains
``moved_modules: skip`` (its test). Import order and line length are left to ruff (``check
--select I --fix``, then ``format``), run on the Python files it changed when ruff is on PATH
(``PATH=.venv/bin:$PATH``).

Usage: ``python scripts/moved_modules.py [ROOT]`` (default: the checkout holding this
script); prints each file it changed. Run it after ``scripts/namespace_imports.py``.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

# Old module -> new module (installed names).
MODULES = {
    "agentmem.agents.protocol": "agentmem.protocol.events",
    "agentmem.agents.roles": "agentmem.protocol.roles",
    # The command line, the top layer, out of the orchestrator that it drives.
    "agentmem.orchestrator.cli": "agentmem.cli.main",
    "agentmem.orchestrator.console": "agentmem.cli.console",
    **{
        f"agentmem.orchestrator.cli_{name}": f"agentmem.cli.{name}"
        for name in ("common", "inspect", "mcp", "servers", "service", "start", "tenants")
    },
}
# Module -> {name it defined or re-exported: the module that exports the name now}.
NAMES = {
    "agentmem.agents": {
        name: "agentmem.protocol"
        for name in (
            "ROUTES",
            "RUN_STREAM",
            "EventType",
            "Role",
            "SectionState",
            "new_event",
            "parse_payload",
        )
    },
    "agentmem.agents.llm": {"make_llm": "agentmem.agents.llm_choice"},
}
SKIP_MARK = "moved_modules: skip"
_SKIP_DIRS = {".git", ".venv", "build", "dist", "node_modules", "agentmem", "__pycache__"}
_SKIP_FILES = {"CHANGELOG.md"}
_TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".sh", ".cfg", ".ini", ".txt"}
_TEXT_NAMES = {"Makefile", "Dockerfile"}


def _short(module: str) -> str:
    return module.removeprefix("agentmem.")


def _path(module: str) -> str:
    return _short(module).replace(".", "/") + ".py"


def _text_rules() -> list[tuple[re.Pattern[str], str]]:
    """(pattern, replacement) for each old name and path, longest first."""
    rules = []
    for old, new in sorted(MODULES.items(), key=lambda item: -len(item[0])):
        rules.append((re.compile(rf"(?<![\w.]){re.escape(old)}(?!\w)"), new))
        rules.append((re.compile(rf"(?<![\w./]){re.escape(_short(old))}(?!\w)"), _short(new)))
        rules.append((re.compile(rf"(?<![\w./]){re.escape(_path(old))}"), _path(new)))
    return rules


def _homes(package: str) -> dict[str, tuple[str, str]]:
    """Each moved name importable from ``package``: (its new package, its name there)."""
    homes = {name: (home, name) for name, home in NAMES.get(package, {}).items()}
    for old, new in MODULES.items():
        parent, _, leaf = old.rpartition(".")
        if parent == package:
            new_parent, _, new_leaf = new.rpartition(".")
            homes[leaf] = (new_parent, new_leaf)
    return homes


def _statement(node: ast.ImportFrom, homes: dict[str, tuple[str, str]]) -> list[str]:
    """``node`` as one ``from ... import ...`` line per package its names now come from."""
    groups: dict[str, list[str]] = {node.module or "": []}  # what stays first, then the moved
    for alias in node.names:
        package, name = homes.get(alias.name, (node.module or "", alias.name))
        bound = alias.asname or alias.name
        groups.setdefault(package, []).append(name if bound == name else f"{name} as {bound}")
    return [
        f"from {package} import {', '.join(names)}" for package, names in groups.items() if names
    ]


def rewrite_imports(text: str) -> str:
    """``from PACKAGE import NAME`` statements whose names moved, split by the names' homes."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return text
    lines = text.split("\n")
    edits = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level or node.module is None:
            continue
        homes = _homes(node.module)
        if not any(alias.name in homes for alias in node.names):
            continue
        assert node.end_lineno is not None
        first, last = lines[node.lineno - 1], lines[node.end_lineno - 1]
        indent = first[: node.col_offset]
        comment = last[node.end_col_offset :] if node.end_col_offset is not None else ""
        new = [f"{indent}{line}" for line in _statement(node, homes)]
        new[-1] += comment
        edits.append((node.lineno - 1, node.end_lineno, new))
    for start, end, new in sorted(edits, reverse=True):
        lines[start:end] = new
    return "\n".join(lines)


def rewrite(text: str, python: bool) -> str:
    if python:
        text = rewrite_imports(text)
    for pattern, replacement in _text_rules():
        text = pattern.sub(replacement, text)
    return text


def files(root: Path) -> list[Path]:
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part in _SKIP_DIRS or part.endswith(".egg-info") for part in relative.parts):
            continue
        if path.is_symlink() or not path.is_file() or path.name in _SKIP_FILES:
            continue
        if path.suffix in _TEXT_SUFFIXES or path.name in _TEXT_NAMES:
            found.append(path)
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[1]).resolve() if len(argv) > 1 else Path(__file__).resolve().parents[1]
    this = Path(__file__).resolve()
    changed_python = []
    for path in files(root):
        if path.resolve() == this:
            continue
        text = path.read_text(encoding="utf-8")
        if SKIP_MARK in text:
            continue
        changed = rewrite(text, python=path.suffix == ".py")
        if changed != text:
            path.write_text(changed, encoding="utf-8")
            print(path.relative_to(root))  # noqa: T201 - the script's output
            if path.suffix == ".py":
                changed_python.append(str(path))
    ruff = shutil.which("ruff")
    if changed_python and ruff:  # sort the imports again, then format
        fix = [ruff, "check", "--quiet", "--select", "I", "--fix", "--exit-zero"]
        subprocess.run([*fix, *changed_python], check=True, cwd=root)
        subprocess.run([ruff, "format", "--quiet", *changed_python], check=True, cwd=root)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
