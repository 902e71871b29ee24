"""``Limits``: how large a value the stores accept, in one small settings object.

Every store takes one (``limits=``; the default is ``Limits()``), so the entry point can pass
the configured caps. Sizes are bytes of UTF-8 (for JSON values: of their JSON text); a value
over its cap is refused with :class:`~memory.errors.InvalidValueError` before anything is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from agentmem.memory.errors import InvalidValueError

MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Size caps for what agents store. The defaults fit real use with room to spare."""

    fact_text_bytes: int = 1 * MB
    """The text of one fact."""
    fact_metadata_bytes: int = 1 * MB
    """The metadata of one fact, as JSON."""
    event_payload_bytes: int = 1 * MB
    """The payload of one event, as JSON."""
    document_value_bytes: int = 1 * MB
    """One version of a document, as JSON."""
    status_bytes: int = 64 * 1024
    """An agent's status and its detail, each."""
    json_depth: int = 64
    """How deeply arrays and objects may nest in metadata, payloads and documents."""

    def __post_init__(self) -> None:
        for cap in fields(self):
            value = getattr(self, cap.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                msg = f"Limits.{cap.name} must be a positive integer, got {value!r}"
                raise InvalidValueError(msg)
