"""Every Redis key is built here, from a namespace and validated parts.

Untrusted ids (agent ids, run ids, categories, resources) pass through :func:`validate_id`
so that no id can reach outside its namespace or into another tenant's keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from memory.errors import InvalidIdError

MAX_ID_LENGTH = 256
_FORBIDDEN = re.compile(r"[:*{}\s]")


def validate_id(value: str, what: str = "id") -> str:
    """Return ``value`` unchanged if it is safe to use as one key part, else raise."""
    if not isinstance(value, str):
        msg = f"{what} must be a string, got {type(value).__name__}"
        raise InvalidIdError(msg)
    if not value:
        msg = f"{what} must not be empty"
        raise InvalidIdError(msg)
    if len(value) > MAX_ID_LENGTH:
        msg = f"{what} is {len(value)} characters long; the limit is {MAX_ID_LENGTH}"
        raise InvalidIdError(msg)
    bad = _FORBIDDEN.search(value)
    if bad is not None:
        msg = (
            f"{what} {value[:40]!r} contains {bad.group()!r}; "
            "ids may not contain ':', '*', '{', '}' or whitespace"
        )
        raise InvalidIdError(msg)
    return value


@dataclass(frozen=True, slots=True)
class Keyspace:
    """The Redis key layout of one namespace (one run, one tenant, one test)."""

    namespace: str

    def __post_init__(self) -> None:
        validate_id(self.namespace, "namespace")

    def _key(self, *parts: str) -> str:
        # The namespace is a hash tag: every key of one namespace maps to one cluster slot,
        # so a Lua script may touch any of them (ids can never contain braces).
        return ":".join(("agentmem", f"{{{self.namespace}}}", *parts))

    def pattern(self) -> str:
        """A SCAN pattern matching every key of this namespace (ids never contain '*')."""
        return self._key("*")

    # facts
    def fact_seq(self) -> str:
        return self._key("fact", "seq")

    def fact_records(self) -> str:
        """Hash from fact id to the fact's JSON record."""
        return self._key("fact", "records")

    def category(self, category: str) -> str:
        return self._key("category", validate_id(category, "category"))

    def categories(self) -> str:
        return self._key("categories")

    def idempotency(self) -> str:
        """Hash from idempotency key to the fact id it produced."""
        return self._key("fact", "idem")

    # status
    def status(self, agent_id: str) -> str:
        return self._key("status", validate_id(agent_id, "agent_id"))

    def status_prefix(self) -> str:
        """Prefix of every status key; a Lua script appends the agent id."""
        return self._key("status", "")

    def live_agents(self) -> str:
        """Sorted set of agent ids scored by the time their status expires."""
        return self._key("agents")

    # locks
    def lock(self, resource: str) -> str:
        return self._key("lock", validate_id(resource, "resource"))

    def fence(self, resource: str) -> str:
        return self._key("fence", validate_id(resource, "resource"))

    # streams
    def stream(self, name: str) -> str:
        return self._key("stream", validate_id(name, "stream"))

    def publish_keys(self, name: str) -> str:
        """Hash from publish idempotency key to the entry id it produced."""
        return self._key("published", validate_id(name, "stream"))

    def dead_letters(self, name: str) -> str:
        return self._key("dlq", validate_id(name, "stream"))
