"""The write-ahead log keeps pending operations in order, on disk, across reopen."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import sys
from pathlib import Path

import anyio
import pytest

from agentmem.memory.wal import WriteAheadLog
from tests.memory.small_disk import fill, small_disk

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


def damage_row(path: Path, seq: int, args: bytes) -> None:
    """Overwrite one stored entry's arguments with raw bytes, behind the log's back."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE wal SET args = CAST(? AS TEXT) WHERE seq = ?", (args, seq))


@pytest.mark.parametrize("garbage", [b"\xff\xfe\x00garbage", b"{not json", b"[1, 2]"])
async def test_an_unreadable_entry_is_set_aside_and_the_others_come_back(
    tmp_path: Path, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """A row whose bytes are not a JSON object moves to the quarantine table with one error
    line; the entries before and after it are read, in order, and the count agrees."""
    path = tmp_path / "wal.db"
    async with WriteAheadLog(path) as wal:
        seqs = await wal.append_many([("publish", {"n": i}) for i in range(3)])
    damage_row(path, seqs[1], garbage)
    async with WriteAheadLog(path) as wal:
        assert [e.args["n"] for e in await wal.pending()] == [0, 2]
        assert await wal.count() == 2
        assert [e.args["n"] for e in await wal.pending()] == [0, 2]  # set aside once
    with contextlib.closing(sqlite3.connect(path)) as db:
        kept = db.execute("SELECT seq, CAST(args AS BLOB) FROM quarantine").fetchall()
    assert kept == [(seqs[1], garbage)]
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert f"entry {seqs[1]} set aside" in line


@pytest.mark.parametrize("keep", [0.5, 40], ids=["half", "header-only"])
async def test_a_damaged_file_is_moved_aside_and_a_new_log_started(
    tmp_path: Path, keep: float, caplog: pytest.LogCaptureFixture
) -> None:
    """A truncated file does not stop the agent: it is kept intact under a new name, one
    error line names it, what is still readable is carried over in order, and the new log
    takes appends."""
    path = tmp_path / "wal.db"
    async with WriteAheadLog(path) as wal:
        await wal.append_many([("publish", {"n": i, "pad": "x" * 500}) for i in range(100)])
    size = path.stat().st_size
    cut = int(size * keep) if keep < 1 else int(keep)
    with path.open("r+b") as file:
        file.truncate(cut)

    async with WriteAheadLog(path) as wal:
        carried = [e.args["n"] for e in await wal.pending(limit=1000)]
        seq = await wal.append("publish", {"n": "new"})
        assert (await wal.pending(limit=1000, after=seq - 1))[0].args == {"n": "new"}
    assert carried == list(range(len(carried)))  # a prefix, in order
    aside = tmp_path / "wal.db.damaged-1"
    assert aside.stat().st_size == cut  # kept as it was found
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert str(aside) in line
    assert f"{len(carried)} entries" in line


async def test_a_full_disk_refuses_the_write_with_a_project_error(tmp_path: Path) -> None:
    """On a tmpfs that fills up, the append that does not fit raises WalFullError (an
    OSError); every append acknowledged before it is there, and nothing more."""
    with small_disk(tmp_path / "disk") as disk:
        async with WriteAheadLog(disk / "wal.db") as wal:
            accepted = await fill(wal)
            assert accepted
            assert await wal.count() == len(accepted)
            assert [e.seq for e in await wal.pending(limit=10_000)] == accepted
        async with WriteAheadLog(disk / "wal.db") as wal:
            assert [e.seq for e in await wal.pending(limit=10_000)] == accepted


async def test_a_log_at_its_size_limit_refuses_the_write_and_keeps_the_rest(
    tmp_path: Path,
) -> None:
    """SQLite's own size limit (max_page_count) gives the same project error: the refused
    batch leaves nothing behind and the log goes on working once there is room."""
    async with WriteAheadLog(tmp_path / "wal.db") as wal:
        wal._db.execute("PRAGMA max_page_count = 40")  # a 160 KB disk, as far as SQLite knows
        accepted = await fill(wal)
        with pytest.raises(OSError, match="nothing was logged"):
            await wal.append_many([("publish", {"n": -1, "pad": "y" * 5000})])
        assert [e.seq for e in await wal.pending(limit=10_000)] == accepted
        await wal.done(*accepted)
        assert await wal.count() == 0
        assert await wal.append("publish", {"n": "after"}) > accepted[-1]
