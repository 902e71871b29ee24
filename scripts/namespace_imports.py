"""Rewrite the project's imports to the installed names: ``memory`` -> ``agentmem.memory``.

The repository keeps its top-level folders (``memory/``, ``agents/``, ``orchestrator/``...);
the installed package is ``agentmem``, whose subpackages are those folders (``agentmem/`` in
the checkout holds one relative symlink per folder; ``agentmem.mcp`` is ``agentmem_mcp/``).
This script moves code written against the old top-level names to the new ones. It is
deterministic and idempotent: it only matches the old names where a module name is expected,
never one already under ``agentmem.``, so a second run changes nothing, and a run after a merge
rewrites only what the merged branches added in the old style.

What it rewrites, in ``*.py`` files (code, and code inside strings, line by line):

- ``from memory... import`` -> ``from agentmem.memory... import``;
- ``import memory`` -> ``from agentmem import memory``; ``import memory.x[ as y]`` ->
  ``import agentmem.memory.x[ as y]`` (a bare ``import memory.x`` then binds ``agentmem``:
  the script prints those lines, to check that ``memory.x`` is not used after them);
- a string literal that names one of the project's modules, such as ``"orchestrator.supervisor"``
  or ``"memory.retry.set_testing"`` (its first two parts must be a module or package in the
  checkout, so ``"service.instance.id"`` stays as it is);
- a string literal that is a bare package name after ``"-m",``, ``] ==`` (an argument of a
  command line), ``getLogger(`` or ``files(`` (``[sys.executable, "-m", "agents", ...]``);
- ``python -m memory...`` in text (docstrings, comments), unless the line would grow past 100
  characters: such lines are printed (``left``) to be rewrapped by hand.

Import order and code lines the rewrite makes too long are left to ruff (``check --select I
--fix``, then ``format``), which the script runs on the files it changed (ruff on PATH: run it
with the venv's bin first, ``PATH=.venv/bin:$PATH``).

In the Makefile, Markdown, YAML and Dockerfiles: ``-m memory...`` and ``from memory... import``.
CHANGELOG.md is history and stays as it is; pyproject.toml is edited by hand; a file that
contains ``namespace_imports: skip`` is left alone.

Usage: ``python scripts/namespace_imports.py [ROOT]`` (default: the checkout holding this
script); prints each file it changed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

# Old top-level name -> name under agentmem.
PACKAGES = {
    "memory": "memory",
    "protocol": "protocol",
    "agents": "agents",
    "orchestrator": "orchestrator",
    "web": "web",
    "service": "service",
    "devservers": "devservers",
    "chaos": "chaos",
    "bench": "bench",
    "cli": "cli",
    "agentmem_mcp": "mcp",
}
_NAMES = "|".join(sorted(PACKAGES, key=len, reverse=True))
_DOTTED = r"(?:\.\w+)*"

_FROM = re.compile(rf"^([ \t]*(?:>>> )?)from ({_NAMES})({_DOTTED}) import ", re.M)
_ITEM = r"\w[\w.]*(?:[ \t]+as[ \t]+\w+)?"
_IMPORT = re.compile(
    rf"^([ \t]*(?:>>> )?)import ((?:{_NAMES}){_DOTTED}(?:[ \t]+as[ \t]+\w+)?"
    rf"(?:,[ \t]*{_ITEM})*)[ \t]*$",
    re.M,
)
_STRING = re.compile(rf"(?<![\w.])([\"'])({_NAMES})((?:\.\w+)+)(:\w+)?\1")
_BARE = re.compile(rf"(\"-m\",\s*|\]\s*==\s*|getLogger\(\s*|files\(\s*)([\"'])({_NAMES})\2")
_RUN = re.compile(rf"(?<![\w.-])(-m )({_NAMES})(?=[\s`'\")]|\.\w|$)", re.M)
SKIP_MARK = "namespace_imports: skip"  # a file with old-style names on purpose (its test)
LINE_LENGTH = 100  # ruff's: a docstring line the rewrite would make longer is reported instead
_SKIP_DIRS = {".git", ".venv", "build", "dist", "node_modules", "agentmem", "__pycache__"}
_SKIP_FILES = {"CHANGELOG.md", "pyproject.toml"}
_TEXT_SUFFIXES = {".md", ".yaml", ".yml", ".sh", ".cfg", ".ini", ".txt"}
_TEXT_NAMES = {"Makefile", "Dockerfile"}


def new(old: str) -> str:
    return f"agentmem.{PACKAGES[old]}"


def is_module(root: Path, dotted: list[str]) -> bool:
    """Whether ``dotted`` (old-style parts) names a module or package of the checkout."""
    path = root.joinpath(*dotted)
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _import_line(match: re.Match[str]) -> str:
    indent, items = match.group(1), match.group(2)
    parts = [item.strip() for item in items.split(",")]
    if len(parts) == 1 and re.fullmatch(rf"({_NAMES})", parts[0]):
        return f"{indent}from agentmem import {PACKAGES[parts[0]]}" + (
            f" as {parts[0]}" if PACKAGES[parts[0]] != parts[0] else ""
        )
    rewritten = []
    for item in parts:
        head = re.split(r"[.\s]", item, maxsplit=1)[0]
        rewritten.append(new(head) + item[len(head) :] if head in PACKAGES else item)
    return f"{indent}import {', '.join(rewritten)}"


def rewrite_python(text: str, root: Path, left: list[str]) -> str:
    text = _FROM.sub(lambda m: f"{m.group(1)}from {new(m.group(2))}{m.group(3)} import ", text)
    text = _IMPORT.sub(_import_line, text)

    def string(m: re.Match[str]) -> str:
        quote, head, rest, attr = m.group(1), m.group(2), m.group(3), m.group(4) or ""
        parts = rest.split(".")[1:]
        if not is_module(root, [head, parts[0]]):
            return m.group(0)
        return f"{quote}{new(head)}{rest}{attr}{quote}"

    text = _STRING.sub(string, text)
    text = _BARE.sub(lambda m: f"{m.group(1)}{m.group(2)}{new(m.group(3))}{m.group(2)}", text)
    lines = text.split("\n")
    for i, line in enumerate(lines):
        changed = _RUN.sub(lambda m: f"{m.group(1)}{new(m.group(2))}", line)
        if changed != line and len(changed) > LINE_LENGTH:
            left.append(f"{i + 1}: {line.strip()}")  # text to rewrap by hand, then run again
        else:
            lines[i] = changed
    return "\n".join(lines)


def rewrite_text(text: str) -> str:
    text = _FROM.sub(lambda m: f"{m.group(1)}from {new(m.group(2))}{m.group(3)} import ", text)
    return _RUN.sub(lambda m: f"{m.group(1)}{new(m.group(2))}", text)


def files(root: Path) -> list[Path]:
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part in _SKIP_DIRS or part.endswith(".egg-info") for part in relative.parts):
            continue
        if path.is_symlink() or not path.is_file() or path.name in _SKIP_FILES:
            continue
        if path.suffix == ".py" or path.suffix in _TEXT_SUFFIXES or path.name in _TEXT_NAMES:
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
        left: list[str] = []
        python = path.suffix == ".py"
        changed = rewrite_python(text, root, left) if python else rewrite_text(text)
        for line in left:
            print(f"left: {path.relative_to(root)}:{line}")  # noqa: T201 - the script's output
        if changed != text:
            path.write_text(changed, encoding="utf-8")
            print(path.relative_to(root))  # noqa: T201
            if python:
                changed_python.append(str(path))
            for line in changed.splitlines():
                if re.match(rf"^\s*import agentmem\.({'|'.join(PACKAGES.values())})\.", line):
                    print(f"    check: {line.strip()}")  # noqa: T201
    ruff = shutil.which("ruff")
    if changed_python and ruff:  # sort the imports again (agentmem.* sorts apart), then format
        fix = [ruff, "check", "--quiet", "--select", "I", "--fix", "--exit-zero"]
        subprocess.run([*fix, *changed_python], check=True, cwd=root)
        subprocess.run([ruff, "format", "--quiet", *changed_python], check=True, cwd=root)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
