"""The linearizability checker: Porcupine's published verdicts on Jepsen's etcd histories, and
small register histories whose verdict is known by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentmem.chaos import linearizability
from agentmem.chaos.calls import pair
from agentmem.chaos.history import Op, OpType
from agentmem.chaos.jepsen import check_log, parse_log
from agentmem.chaos.models import REGISTER, register_operations

LOGS = Path(__file__).parent / "porcupine"

# Porcupine's porcupine_test.go: TestEtcdJepsen000..102 (no 095, an empty file), each with
# checkJepsen(t, n, correct); these are the ones it expects to be linearizable.
PORCUPINE_LINEARIZABLE = {
    2, 5, 7, 18, 25, 31, 38, 45, 48, 49, 51, 53, 56, 67, 75, 76, 80, 87, 92, 98, 100, 101, 102,
}  # fmt: skip
PORCUPINE_LOGS = [n for n in range(103) if n != 95]


@pytest.mark.parametrize("number", PORCUPINE_LOGS, ids=lambda n: f"etcd_{n:03d}")
def test_the_verdict_on_each_jepsen_etcd_log_is_porcupines(number: int) -> None:
    """Each of the 102 etcd logs Porcupine tests gets Porcupine's verdict, never unknown."""
    result = check_log(LOGS / f"etcd_{number:03d}.log")

    assert result.verdict == ("ok" if number in PORCUPINE_LINEARIZABLE else "illegal")


def _register(*lines: tuple[str, OpType, str, object, int]) -> linearizability.Result:
    ops = [Op(p, t, f, "r", v, time) for p, t, f, v, time in lines]
    return linearizability.check(REGISTER, register_operations(pair(ops)))


def test_a_read_of_a_value_overwritten_before_it_began_is_illegal() -> None:
    """A stale read: the write of 2 completed before the read of 1 was invoked."""
    result = _register(
        ("a", "invoke", "write", 1, 0),
        ("a", "ok", "write", 1, 1),
        ("a", "invoke", "write", 2, 2),
        ("a", "ok", "write", 2, 3),
        ("b", "invoke", "read", None, 4),
        ("b", "ok", "read", 1, 5),
    )

    assert result.verdict == "illegal"
    stuck = result.partitions[0].stuck
    assert stuck is not None
    assert stuck.process == "b"


def test_a_read_concurrent_with_a_write_may_see_either_value() -> None:
    """A read overlapping the write of 2 may return the old value 1."""
    result = _register(
        ("a", "invoke", "write", 1, 0),
        ("a", "ok", "write", 1, 1),
        ("a", "invoke", "write", 2, 2),
        ("b", "invoke", "read", None, 3),
        ("b", "ok", "read", 1, 4),
        ("a", "ok", "write", 2, 5),
    )

    assert result.verdict == "ok"


def test_an_unfinished_write_may_take_effect_late_or_never() -> None:
    """A write that never completed may be seen long after its invoke, or never at all."""
    late = _register(
        ("a", "invoke", "write", 1, 0),
        ("a", "info", "write", None, 1),
        ("b", "invoke", "read", None, 2),
        ("b", "ok", "read", None, 3),
        ("b", "invoke", "read", None, 4),
        ("b", "ok", "read", 1, 5),
    )
    never = _register(
        ("a", "invoke", "write", 1, 0),
        ("b", "invoke", "read", None, 2),
        ("b", "ok", "read", None, 3),
    )

    assert late.verdict == "ok"
    assert never.verdict == "ok"


def test_a_failed_compare_and_set_observes_the_value() -> None:
    """A cas [1 2] that fails while the register certainly holds 1 is illegal."""
    result = _register(
        ("a", "invoke", "write", 1, 0),
        ("a", "ok", "write", 1, 1),
        ("a", "invoke", "cas", [1, 2], 2),
        ("a", "fail", "cas", [1, 2], 3),
    )

    assert result.verdict == "illegal"


def test_a_search_out_of_budget_answers_unknown_not_ok() -> None:
    """A search stopped by its step budget says unknown, however far it got."""
    ops = pair(parse_log((LOGS / "etcd_002.log").read_text()))
    budget = linearizability.Budget(max_steps=10_000)

    result = linearizability.check(REGISTER, register_operations(ops), budget=budget)

    assert result.verdict == "unknown"
