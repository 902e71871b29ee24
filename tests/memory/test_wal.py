"""The write-ahead log keeps pending operations in order, on disk, across reopen."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

from memory.wal import WriteAheadLog

pytestmark = pytest.mark.anyio


async def test_entries_come_back_in_append_order(tmp_path: Path) -> None:
    """Pending entries are returned oldest first with their arguments intact."""
    async with WriteAheadLog(tmp_path / "wal.db") as wal:
        for i in range(5):
            await wal.append("publish", {"n": i, "nested": {"ok": True, "x": [1.5, None]}})
        entries = await wal.pending()
    assert [e.args["n"] for e in entries] == [0, 1, 2, 3, 4]
    assert entries[0].args["nested"] == {"ok": True, "x": [1.5, None]}
    assert [e.seq for e in entries] == sorted(e.seq for e in entries)


async def test_done_entries_are_not_replayed(tmp_path: Path) -> None:
    """An entry marked done never comes back; the others keep their order."""
    async with WriteAheadLog(tmp_path / "wal.db") as wal:
        seqs = [await wal.append("store_facts", {"n": i}) for i in range(3)]
        await wal.done(seqs[1])
        assert [e.args["n"] for e in await wal.pending()] == [0, 2]
        assert await wal.count() == 2


async def test_log_survives_a_killed_writer(tmp_path: Path) -> None:
    """Entries appended by a process that is then SIGKILLed are there when the log reopens."""
    path = tmp_path / "wal.db"
    script = (
        "import anyio, os, signal\n"
        "from pathlib import Path\n"
        "from memory.wal import WriteAheadLog\n"
        "async def main():\n"
        f"    wal = WriteAheadLog(Path({str(path)!r}))\n"
        "    for i in range(10):\n"
        "        await wal.append('publish', {'n': i})\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "anyio.run(main)\n"
    )
    proc = await anyio.run_process(
        [sys.executable, "-c", script], check=False, cwd=Path(__file__).parents[2]
    )
    assert proc.returncode == -9
    async with WriteAheadLog(path) as wal:
        assert [e.args["n"] for e in await wal.pending()] == list(range(10))


async def test_a_batch_is_appended_whole_in_order_or_not_at_all(tmp_path: Path) -> None:
    """append_many keeps the batch's order after earlier entries; a batch with a value that
    cannot be logged leaves none of its entries behind."""
    async with WriteAheadLog(tmp_path / "wal.db") as wal:
        first = await wal.append("publish", {"n": 0})
        seqs = await wal.append_many([("publish", {"n": i}) for i in range(1, 4)])
        assert seqs == sorted(seqs)
        assert seqs[0] > first
        with pytest.raises(TypeError):
            await wal.append_many([("publish", {"n": 4}), ("publish", {"n": {1, 2}})])
        assert [e.args["n"] for e in await wal.pending()] == [0, 1, 2, 3]


async def test_appends_made_at_once_are_each_whole_and_in_their_own_order(
    tmp_path: Path,
) -> None:
    """Twenty tasks appending together (committed in shared transactions): every entry is
    there once, each task's entries contiguous and in its order, and the count agrees."""
    async with WriteAheadLog(tmp_path / "wal.db") as wal:
        results: dict[int, list[int]] = {}

        async def append(task: int) -> None:
            results[task] = await wal.append_many(
                [("publish", {"t": task, "i": i}) for i in range(3)]
            )

        async with anyio.create_task_group() as tg:
            for task in range(20):
                tg.start_soon(append, task)
        entries = await wal.pending(limit=1000)
        count = await wal.count()

    assert count == len(entries) == 60
    by_seq = {e.seq: e.args for e in entries}
    for task, seqs in results.items():
        assert seqs == list(range(seqs[0], seqs[0] + 3))
        assert [by_seq[s] for s in seqs] == [{"t": task, "i": i} for i in range(3)]


async def test_a_reopened_log_counts_what_it_holds(tmp_path: Path) -> None:
    """The count kept in memory starts from the file: entries left by an earlier life count."""
    async with WriteAheadLog(tmp_path / "wal.db") as wal:
        seqs = await wal.append_many([("publish", {"n": i}) for i in range(4)])
        await wal.done(seqs[0])
        assert await wal.count() == 3
    async with WriteAheadLog(tmp_path / "wal.db") as wal:
        assert await wal.count() == 3
        await wal.done(*seqs)
        assert await wal.count() == 0
