"""Checking and encoding what the stores send to Redis and PostgreSQL (internal).

Every store encodes JSON values with :func:`encode_json` and checks text, integers and TTLs
here, so bad input fails the same way everywhere: with an
:class:`~memory.errors.InvalidValueError` whose one-line message names the field and the rule,
before anything is sent.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec

from agentmem.memory.errors import InvalidValueError

INT32_MAX = 2**31 - 1
BIGINT_MAX = 2**63 - 1
MAX_TTL_SECONDS = 366 * 24 * 3600.0  # a year: statuses beat every few seconds, leases renew

# A JSON-escaped NUL (PostgreSQL's jsonb refuses it) that is not an escaped backslash + "u0000".
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# One encoder for every call: json.dumps with options builds a new one each time.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
# msgspec encodes faster than json; it also takes types JSON has no name for (sets, bytes, dates)
# and writes NaN as null, so values are checked by _check_shape before it sees them.
_FAST = msgspec.json.Encoder()


def as_str(value: bytes | str) -> str:
    """Decode a Redis reply whether or not the client was created with ``decode_responses``."""
    return value.decode() if isinstance(value, bytes) else value


def utc_now() -> datetime:
    return datetime.now(UTC)


def _size(nbytes: int) -> str:
    return f"{nbytes / 1024 / 1024:.1f} MB" if nbytes >= 1024 * 1024 else f"{nbytes} bytes"


def check_text(value: object, what: str, max_bytes: int, *, allow_nul: bool = True) -> str:
    """``value`` if it is a string that is valid UTF-8 and at most ``max_bytes`` long."""
    if not isinstance(value, str):
        msg = f"{what} must be a string, got {type(value).__name__}"
        raise InvalidValueError(msg)
    if len(value) > max_bytes or len(value.encode("utf-8", "surrogatepass")) > max_bytes:
        msg = f"{what} is larger than its cap of {_size(max_bytes)}; store less, or raise the cap"
        raise InvalidValueError(msg)
    bad = _SURROGATE.search(value)
    if bad is not None:
        msg = f"{what} has a lone surrogate at position {bad.start()}; it is not valid UTF-8 text"
        raise InvalidValueError(msg)
    if not allow_nul and "\x00" in value:
        msg = f"{what} contains a NUL character at position {value.index(chr(0))}; remove it"
        raise InvalidValueError(msg)
    return value


def _check_shape(value: object, what: str, max_depth: int, budget: int) -> None:
    """Raise unless ``value`` is made of JSON types only, nesting within ``max_depth``.

    JSON types: dicts with string keys, lists and tuples, strings, ints, bools, None and
    finite floats (subclasses too: a ``StrEnum`` is its string). Iterative, level by level,
    so no input can exhaust the interpreter's stack; at most ``budget`` arrays and objects are
    visited (shared sub-lists could otherwise make the walk exponential).
    """
    level: list[Any] = [value] if isinstance(value, dict | list | tuple) else []
    if not level:
        _check_scalar(value, what)
    depth = 0
    while level:
        depth += 1
        budget -= len(level)
        if depth > max_depth:
            msg = f"{what} nests deeper than {max_depth} levels; flatten it"
            raise InvalidValueError(msg)
        if budget < 0:
            msg = f"{what} has too many arrays and objects to be under its size cap; store less"
            raise InvalidValueError(msg)
        below: list[Any] = []
        for item in level:
            _check_children(_children(item, what), below, what)
        level = below


def _children(item: dict[Any, Any] | list[Any] | tuple[Any, ...], what: str) -> Iterable[Any]:
    """The values of an array or object, after checking an object's keys are strings."""
    if not isinstance(item, dict):
        return item
    for key in item:
        if type(key) is not str and not isinstance(key, str):
            msg = f"{what} has a key of type {type(key).__name__}; JSON keys are strings"
            raise InvalidValueError(msg)
    return item.values()


def _check_children(children: Iterable[Any], below: list[Any], what: str) -> None:
    """Check the scalars among ``children``; append its arrays and objects to ``below``."""
    for child in children:
        kind = type(child)
        if kind is str or kind is int or kind is bool or child is None:
            continue
        if kind is dict or kind is list or isinstance(child, dict | list | tuple):
            below.append(child)
        else:
            _check_scalar(child, what)


def _check_scalar(value: object, what: str) -> None:
    """Raise unless ``value`` is a JSON scalar: a string, int, bool, None or finite float."""
    if isinstance(value, float):
        if not math.isfinite(value):
            msg = f"{what} is not JSON (it holds {value}, and JSON has no NaN or infinity)"
            raise InvalidValueError(msg)
    elif not (value is None or isinstance(value, str | int)):
        msg = (
            f"{what} is not JSON (a {type(value).__name__} in it); "
            "use str, int, float, bool, None, list and dict only"
        )
        raise InvalidValueError(msg)


def _encode(value: object) -> bytes:
    """UTF-8 JSON of a value made of JSON types only (checked by :func:`_check_shape`)."""
    try:
        return _FAST.encode(value)
    except TypeError:  # a subclass of str, int or float that is not an enum: the slow way
        return _ENCODER.encode(value).encode()


def json_text(value: object) -> bytes:
    """UTF-8 JSON of a value already checked (by :func:`encode_json` or as an id or text)."""
    return _encode(value)


def encode_json(
    value: object, what: str, *, max_bytes: int, max_depth: int, allow_nul: bool = True
) -> str:
    """``value`` as JSON text that is valid UTF-8, or :class:`InvalidValueError` saying why not.

    Refused: types JSON has no name for, non-string keys, NaN and infinities, nesting deeper
    than ``max_depth``, lone surrogates, more than ``max_bytes`` of JSON, and (with
    ``allow_nul=False``, for PostgreSQL's jsonb) NUL characters in strings.
    """
    return encode_json_bytes(
        value, what, max_bytes=max_bytes, max_depth=max_depth, allow_nul=allow_nul
    ).decode()


def encode_json_bytes(
    value: object, what: str, *, max_bytes: int, max_depth: int, allow_nul: bool = True
) -> bytes:
    """:func:`encode_json`, as UTF-8 bytes."""
    _check_shape(value, what, max_depth, budget=max_bytes // 2 + 1)
    try:
        data = _encode(value)
    except UnicodeEncodeError as exc:
        msg = f"{what} has a lone surrogate ({exc.reason}); it is not valid UTF-8 text"
        raise InvalidValueError(msg) from exc
    except (TypeError, ValueError, RecursionError) as exc:
        msg = f"{what} is not JSON ({exc}); use str, int, float, bool, None, list and dict only"
        raise InvalidValueError(msg) from exc
    if len(data) > max_bytes:
        msg = f"{what} is larger than its cap of {_size(max_bytes)} as JSON; store less"
        raise InvalidValueError(msg)
    if not allow_nul and b"\\u0000" in data and _JSON_NUL.search(data.decode()):
        msg = f"{what} has a NUL character in a string, which PostgreSQL cannot store; remove it"
        raise InvalidValueError(msg)
    return data


def check_int(value: object, what: str, low: int, high: int) -> int:
    """``value`` if it is an int (not a bool) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"{what} must be an integer, got {type(value).__name__}"
        raise InvalidValueError(msg)
    if not low <= value <= high:
        msg = f"{what} is {value}; it must be between {low} and {high}"
        raise InvalidValueError(msg)
    return value


def ttl_ms(seconds: object, what: str = "ttl_seconds") -> int:
    """A positive, finite TTL of at most a year, in whole milliseconds (at least 1)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        msg = f"{what} must be a number of seconds, got {type(seconds).__name__}"
        raise InvalidValueError(msg)
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_TTL_SECONDS):
        msg = f"{what} is {seconds}; it must be positive and at most {MAX_TTL_SECONDS:.0f} s"
        raise InvalidValueError(msg)
    return max(1, int(seconds * 1000))
