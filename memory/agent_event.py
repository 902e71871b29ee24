"""``AgentEvent``: one entry of a run's stream, and how it maps to the entry's fields.

Four fields: ``type``, ``agent``, ``ts`` (ISO 8601, UTC) and ``payload`` (one JSON object, so
its types survive; the article stringifies every value), and a fifth, ``traceparent``, when
tracing is on: the W3C trace context of the span the event was made in (taken when the event
is built, so an event kept in a write-ahead log and sent later still names the handler that
made it; see :mod:`memory.telemetry`). A malformed ``traceparent`` is dropped, never poison.
An entry that does not parse as an event raises :class:`~memory.errors.PoisonMessageError`,
which consumers dead-letter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentmem.memory import telemetry
from agentmem.memory._codec import as_str, check_text, encode_json, utc_now
from agentmem.memory.errors import InvalidValueError, PoisonMessageError
from agentmem.memory.keys import validate_id
from agentmem.memory.limits import Limits

_DEFAULT_LIMITS = Limits()
_MAX_EVENT_TYPE = 200


class AgentEvent(BaseModel):
    """Something an agent did or asks for: one entry of a run's stream."""

    model_config = ConfigDict(frozen=True)

    event_type: str = Field(min_length=1, max_length=_MAX_EVENT_TYPE)
    agent_id: str = Field(min_length=1, max_length=256)
    payload: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime = Field(default_factory=utc_now)
    event_id: str | None = None
    traceparent: str | None = Field(default_factory=telemetry.current_traceparent)

    @field_validator("traceparent", mode="plain")
    @classmethod
    def _trace_context(cls, value: object) -> str | None:
        return telemetry.valid_traceparent(value)

    @field_validator("timestamp")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            msg = "timestamp must be timezone-aware"
            raise ValueError(msg)
        return value.astimezone(UTC)

    def to_fields(self, limits: Limits = _DEFAULT_LIMITS) -> dict[str, str]:
        """The stream entry's fields; an event that cannot be one raises before any is sent.

        The agent id follows the id rule (:func:`~memory.keys.validate_id`); the payload must
        be JSON within ``limits`` (:class:`~memory.errors.InvalidValueError` otherwise).
        """
        # The model checked these unless it was built with model_construct; check them again,
        # so nothing reaches the stream that its readers would refuse as a poison message.
        event_type = check_text(self.event_type, "event_type", 800)
        if not 1 <= len(event_type) <= _MAX_EVENT_TYPE:
            msg = f"event_type must have 1 to {_MAX_EVENT_TYPE} characters, not {len(event_type)}"
            raise InvalidValueError(msg)
        agent_id = validate_id(self.agent_id, "event agent_id")
        if not isinstance(self.payload, dict):
            msg = f"payload of {event_type!r} is a {type(self.payload).__name__}, not a dict"
            raise InvalidValueError(msg)
        if not isinstance(self.timestamp, datetime) or self.timestamp.tzinfo is None:
            msg = f"timestamp of {event_type!r} must be a timezone-aware datetime"
            raise InvalidValueError(msg)
        payload = encode_json(
            self.payload,
            f"payload of {event_type!r}",
            max_bytes=limits.event_payload_bytes,
            max_depth=limits.json_depth,
        )
        fields = {
            "type": event_type,
            "agent": agent_id,
            "ts": self.timestamp.isoformat(),
            "payload": payload,
        }
        traceparent = telemetry.valid_traceparent(self.traceparent)
        if traceparent is not None:
            fields["traceparent"] = traceparent
        return fields

    @classmethod
    def from_fields(cls, entry_id: str, fields: Mapping[Any, Any]) -> AgentEvent:
        """Parse a stream entry; anything that is not a valid event is a poison message."""
        try:
            data = {as_str(k): as_str(v) for k, v in fields.items()}
            payload = json.loads(data["payload"])
            if not isinstance(payload, dict):
                msg = f"payload is a JSON {type(payload).__name__}, not an object"
                raise TypeError(msg)  # noqa: TRY301 - reported as a poison message below
            return cls(
                event_type=data["type"],
                agent_id=data["agent"],
                payload=payload,
                timestamp=datetime.fromisoformat(data["ts"]),
                event_id=entry_id,
                traceparent=data.get("traceparent"),
            )
        except (KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
            reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            msg = f"stream entry {entry_id} is not a valid event: {reason}"
            raise PoisonMessageError(msg) from exc
