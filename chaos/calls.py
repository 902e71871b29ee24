"""Calls: a history's invokes paired with their completions.

A process does one thing at a time, so each ``invoke`` is completed by the same process's next
line. An invoke that has no completion (the process crashed, or its file was cut short) or is
followed by another invoke of the same process is read as ``info``: it may or may not have
taken effect, at any time after its invoke. An ``info`` completion is no more certain than no
completion at all, so both have no return time (:attr:`Call.end` is None). A completion with no
invoke before it is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agentmem.chaos.history import Op, OpType


@dataclass(frozen=True)
class Call:
    """One operation from its invoke to its completion."""

    process: str
    f: str
    key: str | None
    invoke: Any  # the invoke's value
    type: OpType  # ok, fail or info ("info" also when it never completed)
    result: Any  # the completion's value (None when it never completed)
    start: int  # the invoke's time
    completed: int | None  # the completion's time, whatever its type

    @property
    def end(self) -> int | None:
        """When it certainly had taken effect or not: None for ``info``."""
        return None if self.type == "info" else self.completed

    def field(self, name: str) -> Any:
        """``name`` from the completion's value if it is a dict holding it, else the invoke's."""
        for value in (self.result, self.invoke):
            if isinstance(value, dict) and name in value:
                return value[name]
        return None

    def describe(self) -> str:
        """``process f(key) at time``, for an anomaly's description."""
        return f"{self.process} {self.f}({self.key}) at {self.start}"


def pair(history: Iterable[Op]) -> list[Call]:
    """The calls of ``history`` (ops in time order), in invoke order."""
    pending: dict[str, Op] = {}
    calls: list[tuple[Op, Call]] = []
    for op in history:
        if op.type == "invoke":
            previous = pending.pop(op.process, None)
            if previous is not None:
                calls.append((previous, _call(previous, None)))
            pending[op.process] = op
            continue
        invoke = pending.pop(op.process, None)
        if invoke is not None:
            calls.append((invoke, _call(invoke, op)))
    calls.extend((invoke, _call(invoke, None)) for invoke in pending.values())
    calls.sort(key=lambda c: c[0].time)
    return [call for _, call in calls]


def _call(invoke: Op, completion: Op | None) -> Call:
    if completion is None:
        return Call(
            invoke.process, invoke.f, invoke.key, invoke.value, "info", None, invoke.time, None
        )
    return Call(
        invoke.process,
        invoke.f,
        invoke.key,
        invoke.value,
        completion.type,
        completion.value,
        invoke.time,
        completion.time,
    )
