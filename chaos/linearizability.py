"""Linearizability of a history against a sequential model: the Wing & Gong search, as Lowe
improved it and Porcupine implements it.

A history is a list of :class:`Operation`: a call time, a return time, an input and the output
the client saw. It is linearizable if every operation can be given one instant between its call
and its return such that applying the inputs in that order to the model yields exactly the
outputs seen. The search walks the calls and returns in time order, keeping a doubly-linked
list of the entries not yet linearized. At each point it tries to linearize a call whose
operation the model accepts from the current state; meeting a return whose operation is not
yet linearized means the current order cannot work, so it backtracks. Lowe's memoisation
prunes the search: a pair (set of operations linearized, model state) already explored leads
nowhere new. The set is a Python int used as a bitset; model states must be hashable.

**Operations that never completed** (``info``, or an invoke without completion) have no return
time and no known output (:data:`UNKNOWN`): their return sits after every other entry, so they
may take effect at any time after their call, and, being linearizable at the very end where
nothing observes them, also never. This is what Porcupine does with Jepsen's ``:info`` and
what Knossos means by an indeterminate operation. A model must accept any input with an
:data:`UNKNOWN` output from any state (applying the input or not, as the state decides).

**Partitioning.** Operations on different keys of a key-value store commute, so the history
is linearizable if and only if each key's sub-history is (Herlihy & Wing's locality); each
partition is searched on its own, which keeps the exponential search small.

**Pruning read-only operations.** If an operation that leaves every state as it was (a read,
a failed compare-and-set, a refused write; the model says which) is legal where the search
stands, and some order completes from there, then one with that operation first completes as
well: moving it forward changes no state, and whatever had to precede it already does. So
the search linearizes it at once and never tries the alternatives at that point, which
collapses the orders of concurrent reads that make plain WGL exponential.

**Bounded.** A search stops after ``max_steps`` steps or ``timeout`` seconds and answers
``unknown``, never ``ok``: a verdict of ``ok`` means a linearization was found, ``illegal``
that every order was tried.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

S = TypeVar("S", bound=Hashable)
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741

Verdict = Literal["ok", "illegal", "unknown"]


class _Unknown(enum.Enum):
    UNKNOWN = "unknown"

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown.UNKNOWN
"""The output of an operation that never completed (or completed with ``info``)."""

Unknown = Literal[_Unknown.UNKNOWN]


@dataclass(frozen=True)
class Model(Generic[S, I, O]):
    """A sequential specification: its initial state and its transition.

    ``step(state, input, output)`` says whether ``output`` is a legal answer to ``input`` in
    ``state``, and the state after it. ``output`` is :data:`UNKNOWN` for an operation that
    never completed; the step must then be legal. ``read_only(input, output)`` is True for
    an operation that, wherever it is legal, leaves the state as it was (a read, a refused
    write): see the module's note on pruning.
    """

    init: S
    step: Callable[[S, I, O | Unknown], tuple[bool, S]]
    describe: Callable[[I, O | Unknown], str] = lambda i, o: f"{i!r} -> {o!r}"
    read_only: Callable[[I, O | Unknown], bool] = lambda i, o: False


@dataclass(frozen=True)
class Operation(Generic[I, O]):
    """One operation of a history: who, when it was called and returned, what it asked and
    what it was told. ``ret`` is None (and ``output`` :data:`UNKNOWN`) when it never completed.
    """

    process: str
    call: int
    ret: int | None
    input: I
    output: O | Unknown
    key: str | None = None


@dataclass
class Budget:
    """How much search a check may spend, over all its partitions."""

    max_steps: int = 5_000_000
    timeout: float = 60.0
    steps: int = 0
    deadline: float = field(default=0.0, repr=False)

    def start(self) -> None:
        self.deadline = time.monotonic() + self.timeout


@dataclass(frozen=True)
class PartitionResult:
    """The verdict on one key's operations."""

    key: str | None
    verdict: Verdict
    operations: int
    steps: int
    seconds: float
    stuck: Operation[Any, Any] | None = None  # illegal: an operation no legal order could place
    linearized: int = 0  # illegal: the most operations any order managed to linearize


@dataclass(frozen=True)
class Result:
    """The verdict on a whole history: illegal if any partition is, else unknown if any search
    ran out of budget, else ok."""

    verdict: Verdict
    partitions: list[PartitionResult]

    @property
    def steps(self) -> int:
        return sum(p.steps for p in self.partitions)


def check(
    model: Model[S, I, O],
    operations: Iterable[Operation[I, O]],
    *,
    budget: Budget | None = None,
) -> Result:
    """Check ``operations`` partitioned by their ``key``: each key is a separate register."""
    budget = budget or Budget()
    budget.start()
    by_key: dict[str | None, list[Operation[I, O]]] = {}
    for op in operations:
        by_key.setdefault(op.key, []).append(op)
    results = [
        _check_partition(model, key, ops, budget)
        for key, ops in sorted(by_key.items(), key=lambda kv: str(kv[0]))
    ]
    verdicts = {r.verdict for r in results}
    verdict: Verdict = (
        "illegal" if "illegal" in verdicts else "unknown" if "unknown" in verdicts else "ok"
    )
    return Result(verdict, results)


_CHECK_CLOCK_EVERY = 4096


def _check_partition(  # noqa: PLR0912, PLR0915 -- one tight loop, kept whole for speed
    model: Model[S, I, O],
    key: str | None,
    ops: Sequence[Operation[I, O]],
    budget: Budget,
) -> PartitionResult:
    started = time.monotonic()
    n = len(ops)
    # Entries 1..2n in time order (calls before returns at equal times, as Porcupine: operations
    # that touch overlap); 0 is the list's head, -1 its end. Unfinished operations return last.
    order = sorted(
        [(op.call, 0, i) for i, op in enumerate(ops)]
        + [(op.ret, 1, i) for i, op in enumerate(ops) if op.ret is not None]
    )
    order += [(0, 1, i) for i, op in enumerate(ops) if op.ret is None]
    size = 2 * n + 1
    op_of = [0] * size
    is_call = [False] * size
    match = [0] * size
    call_entry = [0] * n
    for index, (_, kind, i) in enumerate(order, start=1):
        op_of[index] = i
        if kind == 0:
            is_call[index] = True
            call_entry[i] = index
        else:
            match[call_entry[i]] = index
    nxt = [*range(1, size), -1]
    prv = [-1, *range(size - 1)]

    step = model.step
    inputs = [op.input for op in ops]
    outputs = [op.output for op in ops]
    state = model.init
    linearized = 0
    cache: set[tuple[int, S]] = set()
    calls: list[tuple[int, S, bool]] = []
    read_only = [model.read_only(op.input, op.output) for op in ops]
    entry = nxt[0]
    steps = 0
    best = -1
    stuck: int | None = None
    verdict: Verdict = "ok"
    while nxt[0] != -1:
        steps += 1
        if steps % _CHECK_CLOCK_EVERY == 0 and (
            budget.steps + steps > budget.max_steps or time.monotonic() > budget.deadline
        ):
            verdict = "unknown"
            break
        if is_call[entry]:
            i = op_of[entry]
            legal, new_state = step(state, inputs[i], outputs[i])
            if not legal:
                entry = nxt[entry]
                continue
            new_linearized = linearized | (1 << i)
            if (new_linearized, new_state) not in cache:
                cache.add((new_linearized, new_state))
                calls.append((entry, state, read_only[i]))
                state = new_state
                linearized = new_linearized
                # lift the call and its return out of the list
                r = match[entry]
                nxt[prv[entry]] = nxt[entry]
                prv[nxt[entry]] = prv[entry]
                nxt[prv[r]] = nxt[r]
                if nxt[r] != -1:
                    prv[nxt[r]] = prv[r]
                entry = nxt[0]
                continue
            if not read_only[i]:
                entry = nxt[entry]
                continue
            # a read-only operation legal here, whose configuration failed: so does this one
        elif len(calls) > best:
            # the return of an operation not yet linearized: this order cannot work
            best, stuck = len(calls), op_of[entry]
        # backtrack to the last linearization that has an alternative
        while calls:
            entry, state, committed = calls.pop()
            linearized &= ~(1 << op_of[entry])
            r = match[entry]
            nxt[prv[r]] = r
            if nxt[r] != -1:
                prv[nxt[r]] = r
            nxt[prv[entry]] = entry
            prv[nxt[entry]] = entry
            if not committed:
                break
        else:
            verdict = "illegal"
            break
        entry = nxt[entry]
    budget.steps += steps
    return PartitionResult(
        key,
        verdict,
        n,
        steps,
        time.monotonic() - started,
        stuck=ops[stuck] if verdict == "illegal" and stuck is not None else None,
        linearized=best if verdict == "illegal" else n if verdict == "ok" else 0,
    )
