"""A local write-ahead log: operations an agent could not send yet, kept on disk in order.

When Redis is unreachable an agent appends each write here instead of losing it, and replays
the log in order once Redis is back. The log is a SQLite database in WAL mode with
``synchronous=FULL``: an append has reached the disk when :meth:`WriteAheadLog.append`
returns, so the log survives the agent's own crash and restart. Replay relies on every logged
operation being idempotent (facts carry idempotency keys, events carry dedupe keys), so an
operation that did reach Redis before the connection dropped is not applied twice.

**Damage and a full disk.** The log never stops the agent for one bad entry, and never
acknowledges what it did not record:

- An entry that cannot be read back (its bytes are not UTF-8 JSON: a bad block, a hand edit)
  is moved to the file's ``quarantine`` table, with the reason, in one transaction, and logged
  in one line; the entries after it come back as usual. :meth:`WriteAheadLog.set_aside` does
  the same for an entry that reads but is not a valid write (the durable writer decides that).
- A file SQLite finds damaged when the log opens (not a database, or a malformed page, as a
  truncated file is) is renamed with its ``-wal`` and ``-shm`` files to
  ``<name>.damaged-<n>``, a new log is started at the path, and the entries still readable from
  the damaged copy are carried over in their order (replay is idempotent, so carrying one over
  that had reached Redis is harmless). One error line names the copy and how many entries came
  over; the copy is never deleted, so what could not be read can still be recovered by hand
  (``sqlite3 <copy> .recover``). Starting anew is chosen over refusing to start because the
  log exists so that an agent keeps working when something is broken; refusing would turn one
  bad disk block into an agent that cannot start, and would keep nothing more.
- When the disk is full, an append raises :class:`~memory.errors.WalFullError` and records
  nothing of its batch: the caller is told the write was not logged, and the count is
  unchanged.

**One holder, and adoption.** A log is held by one live process: opening it takes an
exclusive ``flock`` on a sidecar file ``<name>.lock`` (a second open raises
:class:`~memory.errors.WalBusyError`), which the OS releases when the process exits, however
it exits (SIGKILL included). A log whose holder died is an *orphan*: :meth:`WriteAheadLog.adopt`
takes it when, and only when, no live process holds its lock, so of two adopters racing for
one orphan exactly one gets it, and a live owner's log is never touched. The lock is on a
sidecar, not on the database itself: closing any descriptor of a file drops every POSIX lock
the process holds on it, SQLite's own included. :meth:`WriteAheadLog.remove` deletes an empty
log (lock file last, so a racing adopter that locked the old lock file sees it is gone and
takes nothing). The lock is only as good as the file system's ``flock``: a local disk, or one
volume mounted by one host at a time.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from agentmem.memory._resource import AsyncResource
from agentmem.memory.errors import WalBusyError, WalFullError

logger = logging.getLogger(__name__)

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS wal (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    args TEXT NOT NULL
)
"""

_QUARANTINE = """
CREATE TABLE IF NOT EXISTS quarantine (
    seq    INTEGER PRIMARY KEY,
    kind   BLOB,
    args   BLOB,
    reason TEXT NOT NULL,
    at     TEXT NOT NULL DEFAULT (datetime('now'))
)
"""

_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 11, 13, 26


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

    One process holds a log file (its lock; see the module's notes), so the log counts its
    own entries. Appends made at the same time are committed together (group
    commit): the first takes the disk thread, those arriving meanwhile share the next
    transaction, one disk sync for all, each still all-or-nothing and in the order it came.
    """

    def __init__(self, path: Path, *, _held: int | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        held = _take(path) if _held is None else _held
        if held is None:
            msg = (
                f"write-ahead log {path} is held by another live process; stop that process, "
                "or give this one a log of its own"
            )
            raise WalBusyError(msg)
        self._held = held
        try:
            try:
                self._db = self._guarded(_open, path)
            except sqlite3.DatabaseError as exc:
                if _code(exc) not in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
                    raise
                self._db = self._start_over(exc)
        except BaseException:
            self._release()
            raise
        self._count = int(self._db.execute("SELECT count(*) FROM wal").fetchone()[0])
        self._lock = anyio.Lock()
        self._waiting: list[_Waiting] = []

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._lock:
            return await anyio.to_thread.run_sync(self._guarded, fn, *args)

    def _guarded(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` (in the disk thread), a full disk raised as :class:`WalFullError`."""
        try:
            return fn(*args)
        except sqlite3.Error as exc:
            if _code(exc) != _SQLITE_FULL:
                raise
            msg = (
                f"write-ahead log {self.path} is full ({exc}): nothing was logged; "
                "free disk space, then retry the write"
            )
            raise WalFullError(msg) from exc

    async def append(self, kind: str, args: Mapping[str, Any]) -> int:
        """Record one operation durably; returns its sequence number."""
        [seq] = await self.append_many([(kind, args)])
        return seq

    async def append_many(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[int]:
        """Record several operations in one transaction (one disk sync), in order; returns
        their sequence numbers. Either all are recorded or none is (:class:`WalFullError`
        when the disk is full)."""
        waiting = _Waiting([(kind, json.dumps(args)) for kind, args in items])
        self._waiting.append(waiting)
        async with self._lock:
            if waiting.seqs is None and waiting.error is None:  # not committed by another
                batch, self._waiting = self._waiting, []
                try:
                    done = await anyio.to_thread.run_sync(self._guarded, self._insert, batch)
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
        they were appended; an entry that cannot be read is set aside instead."""
        return await self._run(self._read, limit, after)

    def _read(self, limit: int, after: int) -> list[WalEntry]:
        while True:
            rows = self._db.execute(
                "SELECT seq, CAST(kind AS BLOB), CAST(args AS BLOB) FROM wal"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
            entries, unreadable = [], []
            for seq, kind, args in rows:
                try:
                    entries.append(_decode(seq, kind, args))
                except (ValueError, TypeError) as exc:
                    unreadable.append((seq, f"unreadable: {exc}"))
            if unreadable:
                self._quarantine(unreadable)
            if entries or len(rows) < limit:
                return entries

    async def set_aside(self, seq: int, reason: str) -> None:
        """Move one entry to the quarantine table (it is not replayed; it is kept there)."""
        await self._run(self._quarantine, [(seq, reason)])

    def _quarantine(self, entries: list[tuple[int, str]]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            for seq, reason in entries:
                self._db.execute(
                    "INSERT OR REPLACE INTO quarantine (seq, kind, args, reason)"
                    " SELECT seq, kind, args, ? FROM wal WHERE seq = ?",
                    (reason, seq),
                )
                self._db.execute("DELETE FROM wal WHERE seq = ?", (seq,))
        self._count -= len(entries)
        for seq, reason in entries:
            logger.error(
                "write-ahead log %s: entry %d set aside in its quarantine table (%s)",
                self.path,
                seq,
                reason,
            )

    async def done(self, *seqs: int) -> None:
        """Forget operations once their effect is safely in Redis (one transaction)."""
        if not seqs:
            return
        marks = ", ".join("?" * len(seqs))
        deleted = await self._run(
            lambda: self._db.execute(f"DELETE FROM wal WHERE seq IN ({marks})", seqs).rowcount
        )
        self._count -= deleted

    async def count(self) -> int:
        """How many operations the log holds (kept by this process, which owns the file)."""
        return self._count

    def _start_over(self, damage: sqlite3.DatabaseError) -> sqlite3.Connection:
        """Move the damaged file aside, open a new log, carry over what is still readable."""
        aside = _free_name(self.path)
        for suffix in ("", "-wal", "-shm"):
            part = Path(f"{self.path}{suffix}")
            if part.exists():
                part.rename(f"{aside}{suffix}")
        db = self._guarded(_open, self.path)
        rows = _salvage(aside)
        with db:
            db.execute("BEGIN")
            db.executemany("INSERT INTO wal (kind, args) VALUES (?, ?)", rows)
        logger.error(
            "write-ahead log %s is damaged (%s): moved it to %s and started a new log with the "
            "%d entries still readable from it; recover any others with `sqlite3 %s .recover`",
            self.path,
            damage,
            aside,
            len(rows),
            aside,
        )
        return db

    @classmethod
    def adopt(cls, path: Path) -> WriteAheadLog | None:
        """The log at ``path`` if no live process holds it (its holder died): held by this
        process from now on. None if another process holds it, or there is no log there."""
        held = _take(path)
        if held is None:
            return None
        if not path.exists():  # nothing to adopt (a lock file left without its log)
            _lock_path(path).unlink(missing_ok=True)
            os.close(held)
            return None
        return cls(path, _held=held)

    def quarantined(self) -> int:
        """How many entries the quarantine table holds (set aside, kept in the file)."""
        return int(self._db.execute("SELECT count(*) FROM quarantine").fetchone()[0])

    def remove(self) -> bool:
        """Close the log and delete its files if it holds nothing (no entry, none set aside);
        returns whether it did. A log that holds something is closed and kept."""
        empty = self._count == 0 and self.quarantined() == 0
        self._db.close()
        if empty:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            _lock_path(self.path).unlink(missing_ok=True)  # before the lock is released
        self._release()
        return empty

    def set_file_aside(self, label: str) -> Path:
        """Close the log and rename its files to ``<name>.<label>``, where no adopter looks
        (they are kept for recovery by hand); returns the new path."""
        self._db.close()
        aside = self.path.with_name(f"{self.path.name}.{label}")
        for suffix in ("", "-wal", "-shm"):
            part = Path(f"{self.path}{suffix}")
            if part.exists():
                part.rename(f"{aside}{suffix}")
        _lock_path(self.path).unlink(missing_ok=True)
        self._release()
        return aside

    def _release(self) -> None:
        if self._held >= 0:
            os.close(self._held)  # the flock goes with the last descriptor of the lock file
            self._held = -1

    def close(self) -> None:
        self._db.close()
        self._release()

    async def aclose(self) -> None:
        self.close()


def _lock_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.lock")


def _take(path: Path) -> int | None:
    """The log's lock file, open and exclusively locked by this process (None: another
    process holds it). The OS releases the lock when the process exits, however it exits."""
    lock = _lock_path(path)
    while True:
        held = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(held)
            return None
        try:
            current = os.stat(lock).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(held).st_ino:
            return held
        os.close(held)  # its holder removed it meanwhile: lock the file now at that name


def _open(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(_SCHEMA)
        db.execute(_QUARANTINE)
        db.execute("SELECT count(*) FROM wal").fetchone()  # reads every page of the table
    except BaseException:
        db.close()
        raise
    return db


def _code(exc: sqlite3.Error) -> int:
    """The primary SQLite result code of an error (-1 when it carries none)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return -1 if code is None else int(code) & 0xFF


def _decode(seq: int, kind: bytes | None, args: bytes | None) -> WalEntry:
    """An entry from its stored bytes; ValueError or TypeError if they are not a kind and a
    JSON object."""
    if kind is None or args is None:
        msg = "a column is empty"
        raise ValueError(msg)
    decoded = json.loads(args.decode())
    if not isinstance(decoded, dict):
        msg = f"arguments are a {type(decoded).__name__}, not an object"
        raise TypeError(msg)
    return WalEntry(seq, kind.decode(), decoded)


def _salvage(path: Path) -> list[tuple[bytes, bytes]]:
    """The rows of a damaged log that can still be read, in order, up to the first that
    cannot."""
    rows: list[tuple[bytes, bytes]] = []
    try:
        db = sqlite3.connect(path)
        try:
            cursor = db.execute(
                "SELECT CAST(kind AS BLOB), CAST(args AS BLOB) FROM wal ORDER BY seq"
            )
            while (row := cursor.fetchone()) is not None:
                if None not in row:  # an empty column would not fit the new log
                    rows.append(row)
        finally:
            db.close()
    except sqlite3.Error:
        pass  # the rest cannot be read: it stays in the damaged copy
    return rows


def _free_name(path: Path) -> Path:
    """``<name>.damaged-<n>`` next to ``path``, with the first ``n`` not taken."""
    n = 1
    while (aside := path.with_name(f"{path.name}.damaged-{n}")).exists():
        n += 1
    return aside
