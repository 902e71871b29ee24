"""Histories: what each process of a chaos run was told, operation by operation.

As in Jepsen, every operation a client performs is recorded twice: an ``invoke`` when it is
sent, and its completion when the answer arrives: ``ok`` (it happened, with what the server
said), ``fail`` (it certainly did not happen) or ``info`` (unknown: the connection dropped, the
call timed out; it may or may not have taken effect, at any time after its invoke). A process
that crashes leaves its last invoke without a completion, which the checker reads as ``info``.

Times are ``time.monotonic_ns()``: on one host it is one clock for every process, so the
intervals of operations of different processes can be compared.

The operations (``f``) and what their ``value`` holds:

- ``acquire`` (key: the lock's resource). invoke: ``{"lease": id}``; ok:
  ``{"lease": id, "token": fencing token, "valid_until": ns}``; fail: ``{"error": ...}``.
- ``release`` (key: resource). ``{"lease": id}``; ok means the lease was still held.
- ``write`` (key: a document key). invoke: ``{"value": any, "expected": int | None,
  "token": int | None, "lease": id | None}``; ok: ``{"version": int}``; fail:
  ``{"error": "conflict" | "stale" | ...}``.
- ``read`` (key: a document key). ok: ``{"version": int, "value": any}`` (version 0 and
  value None for a document that does not exist).
- ``sem_acquire`` / ``sem_release`` (key: the semaphore's name). invoke:
  ``{"permit": id, "limit": int}``; ok of an acquire: ``{"permit": id, "limit": int,
  "valid_until": ns}``.
- ``deliver`` (key: the handoff's task id): a consumer was handed the entry; ``{"entry": id}``.
- ``effect`` (key: task id): the handoff's effect was applied (ok) or refused as already done
  (fail); ``{"entry": id}``.
- ``ack`` (key: task id): ok when the acknowledgement was accepted; ``{"entry": id}``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

OpType = Literal["invoke", "ok", "fail", "info"]


class Op(msgspec.Struct, frozen=True, omit_defaults=True):
    """One line of a history."""

    process: str
    type: OpType
    f: str
    key: str | None = None
    value: Any = None
    time: int = 0  # time.monotonic_ns()


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Op)


@dataclass
class Recorder:
    """Appends one process's operations to a JSON-lines file, each line as it happens.

    Each line is written with one ``write`` on a file opened for appending, so the lines of a
    process that is killed are whole up to its last one.
    """

    path: Path
    process: str
    _fd: int = field(init=False, default=-1)

    def __post_init__(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def record(
        self, type_: OpType, f: str, key: str | None = None, value: Any = None, at: int = 0
    ) -> Op:
        """Append one op, timed now, or at ``at`` (``time.monotonic_ns()``; never before
        this process's previous op): an invoke recorded once its key is known."""
        op = Op(self.process, type_, f, key, value, at or time.monotonic_ns())
        os.write(self._fd, _encoder.encode(op) + b"\n")
        return op

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def write_history(path: Path, ops: Iterable[Op]) -> None:
    """Write ``ops`` as a history file (for tests and hand-made histories)."""
    path.write_bytes(b"".join(_encoder.encode(op) + b"\n" for op in ops))


def read_history(*paths: Path) -> list[Op]:
    """Every operation of the files, ordered by time; a torn last line (a killed process) is
    skipped."""
    ops: list[Op] = []
    for path in paths:
        ops.extend(_read(path))
    ops.sort(key=lambda op: op.time)
    return ops


def _read(path: Path) -> Iterator[Op]:
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            yield _decoder.decode(line)
        except msgspec.DecodeError:
            continue
