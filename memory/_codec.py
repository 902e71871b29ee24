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
from datetime import UTC, datetime
from typing import Any

from memory.errors import InvalidValueError

INT32_MAX = 2**31 - 1
BIGINT_MAX = 2**63 - 1
MAX_TTL_SECONDS = 366 * 24 * 3600.0  # a year: statuses beat every few seconds, leases renew

# A JSON-escaped NUL (PostgreSQL's jsonb refuses it) that is not an escaped backslash + "u0000".
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# One encoder for every call: json.dumps with options builds a new one each time (2x slower).
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)


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
    """Raise unless object keys are strings and nesting stays within ``max_depth``.

    Iterative, level by level, so no input can exhaust the interpreter's stack; only arrays
    and objects are visited, at most ``budget`` of them (shared sub-lists could otherwise make
    the walk exponential). ``json.dumps`` refuses every other type afterwards.
    """
    level: list[Any] = [value] if isinstance(value, dict | list | tuple) else []
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
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        msg = (
                            f"{what} has a key of type {type(key).__name__}; JSON keys are strings"
                        )
                        raise InvalidValueError(msg)
                    if isinstance(child, dict | list | tuple):
                        below.append(child)
            else:
                below.extend(c for c in item if isinstance(c, dict | list | tuple))
        level = below


def json_text(value: object) -> str:
    """JSON text of a value already checked (by :func:`encode_json` or as an id or text)."""
    return _ENCODER.encode(value)


def encode_json(
    value: object, what: str, *, max_bytes: int, max_depth: int, allow_nul: bool = True
) -> str:
    """``value`` as JSON text that is valid UTF-8, or :class:`InvalidValueError` saying why not.

    Refused: types JSON has no name for, non-string keys, NaN and infinities, nesting deeper
    than ``max_depth``, lone surrogates, more than ``max_bytes`` of JSON, and (with
    ``allow_nul=False``, for PostgreSQL's jsonb) NUL characters in strings.
    """
    _check_shape(value, what, max_depth, budget=max_bytes // 2 + 1)
    try:
        text = _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        msg = f"{what} is not JSON ({exc}); use str, int, float, bool, None, list and dict only"
        raise InvalidValueError(msg) from exc
    if len(text) > max_bytes:
        msg = f"{what} is larger than its cap of {_size(max_bytes)} as JSON; store less"
        raise InvalidValueError(msg)
    try:
        nbytes = len(text.encode())
    except UnicodeEncodeError as exc:
        msg = f"{what} has a lone surrogate ({exc.reason}); it is not valid UTF-8 text"
        raise InvalidValueError(msg) from exc
    if nbytes > max_bytes:
        msg = f"{what} is larger than its cap of {_size(max_bytes)} as JSON; store less"
        raise InvalidValueError(msg)
    if not allow_nul and "\\u0000" in text and _JSON_NUL.search(text):
        msg = f"{what} has a NUL character in a string, which PostgreSQL cannot store; remove it"
        raise InvalidValueError(msg)
    return text


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
