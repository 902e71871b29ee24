"""Small conversions shared by the Redis-backed stores (internal)."""

from __future__ import annotations

from datetime import UTC, datetime


def as_str(value: bytes | str) -> str:
    """Decode a Redis reply whether or not the client was created with ``decode_responses``."""
    return value.decode() if isinstance(value, bytes) else value


def utc_now() -> datetime:
    return datetime.now(UTC)
