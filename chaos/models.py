"""The sequential models histories are checked against, and how calls become their operations.

**Register** (:data:`REGISTER`): the key-value register of Jepsen's etcd test, as Porcupine
models it. State: the value (None before the first write). ``read`` returns it; ``write v``
sets it; ``cas [old, new]`` sets it to ``new`` if it is ``old`` and answers whether it did. A
``cas`` that fails is an observation (the value was not ``old``), as in Porcupine; a ``read``
that fails or times out observes nothing and is left out. In history form (chaos.history.Op):
a write's invoke value is the value, a cas's is ``[old, new]``, a read's ok value is the value.

**Document** (:data:`DOCUMENT`): a versioned document of :class:`memory.SharedAgentDB`. State:
(version, value, highest fencing token seen); version 0 and value None before the first
write. ``read`` returns (version, value). ``write(value, expected, token)`` is refused as
``stale`` if ``token`` is lower than the highest token seen, as ``conflict`` if ``expected`` is
not None and not the version; otherwise it appends version + 1 and answers that version. So a
refusal is legal only where its reason holds at its linearization point, and ok versions are
gapless and never repeat. When both reasons hold, either answer is accepted (the server checks
the token first; the order of the reasons is not a safety property). A write failing for any
other reason did not happen and is left out. Values are compared as canonical JSON.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from agentmem.chaos.calls import Call
from agentmem.chaos.linearizability import UNKNOWN, Model, Operation, Unknown

# -- the register ----------------------------------------------------------------------------

RegisterState = Any  # the value, None before the first write
RegisterInput = tuple[str, Any, Any]  # ("read", None, None), ("write", v, None), ("cas", old, new)
RegisterOutput = Any  # read: the value; write: None; cas: whether it swapped


def _register_step(
    state: RegisterState, inp: RegisterInput, out: RegisterOutput | Unknown
) -> tuple[bool, RegisterState]:
    f, a, b = inp
    if f == "read":
        return (out is UNKNOWN or out == state), state
    if f == "write":
        return True, a
    swapped = state == a
    return (out is UNKNOWN or out == swapped), (b if swapped else state)


def _register_describe(inp: RegisterInput, out: RegisterOutput | Unknown) -> str:
    f, a, b = inp
    if f == "read":
        return f"read -> {out!r}"
    if f == "write":
        return f"write({a!r})"
    return f"cas({a!r}, {b!r}) -> {out!r}"


def _register_read_only(inp: RegisterInput, out: RegisterOutput | Unknown) -> bool:
    return inp[0] == "read" or (inp[0] == "cas" and out is False)


REGISTER: Model[RegisterState, RegisterInput, RegisterOutput] = Model(
    None, _register_step, _register_describe, _register_read_only
)


def register_operations(calls: Iterable[Call]) -> list[Operation[RegisterInput, Any]]:
    """The register operations of ``calls`` (f read, write or cas)."""
    ops: list[Operation[RegisterInput, Any]] = []
    for c in calls:
        output: Any
        if c.f == "read":
            if c.type != "ok":
                continue
            inp: RegisterInput = ("read", None, None)
            output = c.result
        elif c.f == "write":
            if c.type == "fail":
                continue
            inp, output = ("write", c.invoke, None), None
        elif c.f == "cas":
            old, new = c.invoke
            inp, output = ("cas", old, new), c.type == "ok"
        else:
            continue
        if c.end is None:
            output = UNKNOWN
        ops.append(Operation(c.process, c.start, c.end, inp, output, c.key))
    return ops


# -- the document ----------------------------------------------------------------------------

DocumentState = tuple[int, bytes, int | None]  # version, canonical JSON value, highest token
DocumentInput = tuple[str, bytes, int | None, int | None]  # ("write", value, expected, token)
DocumentOutput = Any  # write: the version, "conflict" or "stale"; read: (version, value)

_READ: DocumentInput = ("read", b"", None, None)


def canonical(value: Any) -> bytes:
    """``value`` as canonical JSON (keys sorted), to compare values written and read."""
    return msgspec.json.encode(value, order="sorted")


def _document_step(
    state: DocumentState, inp: DocumentInput, out: DocumentOutput | Unknown
) -> tuple[bool, DocumentState]:
    version, value, highest = state
    f, new_value, expected, token = inp
    if f == "read":
        return (out is UNKNOWN or out == (version, value)), state
    stale = token is not None and highest is not None and token < highest
    conflict = expected is not None and expected != version
    if out == "stale":
        return stale, state
    if out == "conflict":
        return conflict, state
    if stale or conflict:
        return out is UNKNOWN, state
    written = (version + 1, new_value, token if highest is None else max(highest, token or 0))
    return (out is UNKNOWN or out == version + 1), written


def _document_describe(inp: DocumentInput, out: DocumentOutput | Unknown) -> str:
    f, value, expected, token = inp
    if f == "read":
        return f"read -> {out!r}" if out is UNKNOWN else f"read -> v{out[0]} {out[1].decode()}"
    return f"write({value.decode()}, expected={expected}, token={token}) -> {out!r}"


def _document_read_only(inp: DocumentInput, out: DocumentOutput | Unknown) -> bool:
    return inp[0] == "read" or out in ("conflict", "stale")


DOCUMENT: Model[DocumentState, DocumentInput, DocumentOutput] = Model(
    (0, canonical(None), None), _document_step, _document_describe, _document_read_only
)


def document_operations(calls: Iterable[Call]) -> list[Operation[DocumentInput, Any]]:
    """The document operations of ``calls`` (f read or write, values as chaos.history says)."""
    ops: list[Operation[DocumentInput, Any]] = []
    for c in calls:
        output: Any
        if c.f == "read":
            if c.type != "ok":
                continue
            inp = _READ
            output = (c.field("version"), canonical(c.field("value")))
        elif c.f == "write":
            expected, token = c.field("expected"), c.field("token")
            inp = ("write", canonical(c.field("value")), expected, token)
            if c.type == "fail":
                error = c.field("error")
                if error not in ("conflict", "stale"):
                    continue
                output = error
            else:
                output = c.field("version")
        else:
            continue
        if c.end is None:
            output = UNKNOWN
        ops.append(Operation(c.process, c.start, c.end, inp, output, c.key))
    return ops
