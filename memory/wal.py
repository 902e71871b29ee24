"""A local write-ahead log: operations an agent could not send yet, kept on disk in order.

When Redis is unreachable an agent appends each write here instead of losing it, and replays
the log in order once Redis is back. The log is a SQLite database in WAL mode with
``synchronous=FULL``: an append has reached the disk when :meth:`WriteAheadLog.append`
returns, so the log survives the agent's own crash and restart. Replay relies on every logged
operation being idempotent (facts carry idempotency keys, events carry dedupe keys), so an
operation that did reach Redis before the connection dropped is not applied twice.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from memory._resource import AsyncResource

_SCHEMA = """
CREATE TABLE IF NOT EXISTS wal (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    args TEXT NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class WalEntry:
    seq: int
    kind: str
    args: dict[str, Any]


@dataclass(slots=True)
class _Waiting:
    """Rows of one append waiting to be committed, with the outcome once they are."""

    rows: list[tuple[str, str]]
    seqs: list[int] | None = None
    error: BaseException | None = None


class WriteAheadLog(AsyncResource):
    """An ordered, durable queue of pending operations in one local file.

    One process owns a log file (an agent claims its instance before opening its log), so the
    log counts its own entries. Appends made at the same time are committed together (group
    commit): the first takes the disk thread, those arriving meanwhile share the next
    transaction, one disk sync for all, each still all-or-nothing and in the order it came.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        self._count = int(self._db.execute("SELECT count(*) FROM wal").fetchone()[0])
        self._lock = anyio.Lock()
        self._waiting: list[_Waiting] = []

    async def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        async with self._lock:
            return await anyio.to_thread.run_sync(lambda: self._db.execute(sql, params).fetchall())

    async def append(self, kind: str, args: Mapping[str, Any]) -> int:
        """Record one operation durably; returns its sequence number."""
        [seq] = await self.append_many([(kind, args)])
        return seq

    async def append_many(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[int]:
        """Record several operations in one transaction (one disk sync), in order; returns
        their sequence numbers. Either all are recorded or none is."""
        waiting = _Waiting([(kind, json.dumps(args)) for kind, args in items])
        self._waiting.append(waiting)
        async with self._lock:
            if waiting.seqs is None and waiting.error is None:  # not committed by another
                batch, self._waiting = self._waiting, []
                try:
                    done = await anyio.to_thread.run_sync(self._insert, batch)
                except BaseException as exc:
                    for other in batch:
                        other.error = exc
                    raise
                for other, seqs in zip(batch, done, strict=True):
                    other.seqs = seqs
                    self._count += len(seqs)
        if waiting.error is not None:
            raise waiting.error
        assert waiting.seqs is not None
        return waiting.seqs

    def _insert(self, batch: list[_Waiting]) -> list[list[int]]:
        """Every waiting append's rows in one transaction (in the disk thread)."""
        done = []
        with self._db:  # BEGIN ... COMMIT (ROLLBACK if an insert fails)
            self._db.execute("BEGIN")
            for waiting in batch:
                seqs = []
                for row in waiting.rows:
                    cursor = self._db.execute(
                        "INSERT INTO wal (kind, args) VALUES (?, ?) RETURNING seq", row
                    )
                    seqs.append(int(cursor.fetchone()[0]))
                done.append(seqs)
        return done

    async def pending(self, limit: int = 100, *, after: int = 0) -> list[WalEntry]:
        """The oldest operations not yet marked done (numbered above ``after``), in the order
        they were appended."""
        rows = await self._run(
            "SELECT seq, kind, args FROM wal WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
        )
        return [WalEntry(seq, kind, json.loads(args)) for seq, kind, args in rows]

    async def done(self, *seqs: int) -> None:
        """Forget operations once their effect is safely in Redis (one transaction)."""
        if not seqs:
            return
        marks = ", ".join("?" * len(seqs))
        async with self._lock:
            deleted = await anyio.to_thread.run_sync(
                lambda: self._db.execute(f"DELETE FROM wal WHERE seq IN ({marks})", seqs)
            )
            self._count -= deleted.rowcount

    async def count(self) -> int:
        """How many operations the log holds (kept by this process, which owns the file)."""
        return self._count

    def close(self) -> None:
        self._db.close()

    async def aclose(self) -> None:
        self.close()
