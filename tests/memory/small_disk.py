"""A tiny tmpfs for tests that need a disk that really fills up (ENOSPC from the kernel).

Mounting needs root (CAP_SYS_ADMIN); where it is not allowed the test using it is skipped,
and the size-limit test in ``test_wal.py`` still drives the same error path through SQLite.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agentmem.memory.errors import WalFullError
from agentmem.memory.wal import WriteAheadLog


@contextmanager
def small_disk(path: Path, size: str = "96k") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` while the block runs."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


async def fill(wal: WriteAheadLog) -> list[int]:
    """Append 2 KB entries until the log refuses one; the sequence numbers it accepted."""
    accepted: list[int] = []
    for i in range(10_000):
        try:
            accepted.append(await wal.append("publish", {"n": i, "pad": "x" * 2000}))
        except WalFullError:
            break
    with pytest.raises(WalFullError, match="is full"):  # and again: the disk is still full
        await wal.append("publish", {"pad": "x" * 2000})
    return accepted
