"""Jepsen's etcd register logs, read as histories: what validates the linearizability checker.

Porcupine checks its implementation against 102 logs of Jepsen's etcd test (lines such as
``INFO  jepsen.util - 3	:invoke	:cas	[1 4]``), each published with its verdict; the same logs
(tests/chaos/porcupine/) must get the same verdicts here. A line becomes a
:class:`chaos.history.Op` on the register ``r``, its time the line's number; the values are
the register model's (see :mod:`chaos.models`): ``nil`` is None, ``[a b]`` a list.

``python -m agentmem.chaos.jepsen LOG...`` prints each log's verdict, search steps and time.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from agentmem.chaos import linearizability
from agentmem.chaos.calls import pair
from agentmem.chaos.history import Op, OpType
from agentmem.chaos.models import REGISTER, register_operations

_LINE = re.compile(
    r"^INFO\s+jepsen\.util\s+-\s+(\d+)\s+:(invoke|ok|fail|info)\s+:(read|write|cas)\s+(.*?)\s*$"
)


def _value(text: str) -> Any:
    if text in ("nil", ":timed-out"):
        return None
    if text.startswith("["):
        return [int(v) for v in text.strip("[]").split()]
    return int(text)


def parse_log(text: str) -> list[Op]:
    """The operations of a Jepsen etcd log; lines that are not operations are skipped."""
    ops: list[Op] = []
    for number, line in enumerate(text.splitlines()):
        m = _LINE.match(line)
        if m is None:
            continue
        process, type_, f, value = m.groups()
        ops.append(Op(process, cast(OpType, type_), f, "r", _value(value), number))
    return ops


def check_log(path: Path, budget: linearizability.Budget | None = None) -> linearizability.Result:
    """The register verdict on one Jepsen etcd log."""
    calls = pair(parse_log(path.read_text()))
    return linearizability.check(REGISTER, register_operations(calls), budget=budget)


def main(argv: Sequence[str] | None = None) -> int:
    paths = [Path(p) for p in (sys.argv[1:] if argv is None else argv)]
    total = time.monotonic()
    for path in paths:
        started = time.monotonic()
        result = check_log(path)
        print(
            f"{path.name}: {result.verdict} ({result.steps} steps, "
            f"{time.monotonic() - started:.3f} s)"
        )
    print(f"{len(paths)} logs in {time.monotonic() - total:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
