"""Source documents for a run: a folder of text or markdown files, checked up front."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from agentmem.memory import AgentMemoryError
from agentmem.orchestrator.defaults import DEFAULT_TOPIC, PROJECT_SOURCES
from agentmem.protocol.events import SourceDoc

SUFFIXES = (".md", ".markdown", ".txt")
MAX_FILE_BYTES = 1_000_000
MAX_FILES = 50

__all__ = ["DEFAULT_TOPIC", "PROJECT_SOURCES", "SourceError", "load_sources"]


class SourceError(AgentMemoryError, ValueError):
    """The sources folder or one of its files cannot be used."""


def load_sources(folder: Path) -> list[SourceDoc]:
    """Every ``.md``/``.txt`` file of ``folder``, sorted by name; clear errors for bad ones."""
    if not folder.exists():
        msg = f"sources folder {folder} does not exist"
        raise SourceError(msg)
    if not folder.is_dir():
        msg = f"sources path {folder} is not a folder; pass a folder of .md or .txt files"
        raise SourceError(msg)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        msg = f"sources folder {folder} has no .md or .txt files"
        raise SourceError(msg)
    if len(files) > MAX_FILES:
        msg = f"sources folder {folder} has {len(files)} files; the limit is {MAX_FILES}"
        raise SourceError(msg)
    return [_read(path) for path in files]


def _read(path: Path) -> SourceDoc:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            msg = f"source {path} is {size:,} bytes; the limit is {MAX_FILE_BYTES:,} per file"
            raise SourceError(msg)
        data = path.read_bytes()
    except OSError as exc:
        msg = f"cannot read source {path}: {exc.strerror}"
        raise SourceError(msg) from exc
    if b"\0" in data:
        msg = f"source {path} is binary (it contains NUL bytes); use text or markdown files"
        raise SourceError(msg)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"source {path} is not UTF-8 text (byte {exc.start}); convert it to UTF-8"
        raise SourceError(msg) from exc
    if not text.strip():
        msg = f"source {path} is empty"
        raise SourceError(msg)
    try:
        return SourceDoc(name=path.name, text=text)
    except ValidationError as exc:  # the name: too long, or more than one line
        problem = exc.errors()[0]["msg"].removeprefix("Value error, ")
        msg = f"source {path!r} cannot be used: its name {problem}; rename it"
        raise SourceError(msg) from exc
