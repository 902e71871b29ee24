"""Every Redis key is built here, from a namespace and validated, encoded parts.

Ids are what people write: any string of 1 to 256 characters without control characters
(``customer:42``, ``market/eu:2026``, ``a b``). :func:`validate_id` checks that rule; the rest
of this module turns a valid id into a name that is safe where it goes:

- :func:`encode_part` for a Redis key part. The characters that mean something in a key or a
  SCAN pattern (``: { } * ? [ ] \\ %``, whitespace, anything unprintable) become ``%XX``
  (the UTF-8 bytes, like a URL), so a part never contains a separator, a brace or a glob
  character, and because ``%`` itself is encoded two different ids never share a key.
  :func:`decode_part` reverses it.
- :func:`glob_escape` for a SCAN pattern built from a key prefix (defence in depth: an encoded
  part has nothing to escape).
- :func:`path_part` for a file or folder name (``/``, ``..`` and the like cannot appear).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from agentmem.memory.errors import InvalidIdError

MAX_ID_LENGTH = 256

# Control characters (C0, DEL, C1) and lone surrogates, which are not text and not UTF-8.
_NOT_ALLOWED = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Characters that may need encoding in a key part: the special ASCII ones, and any non-ASCII.
_MAYBE_SPECIAL = re.compile(r"[%:{}*?\[\]\\\s]|[^\x20-\x7e]")
_GLOB = re.compile(r"([*?\[\]\\])")
_PATH_MAX_BYTES = 200  # below NAME_MAX (255) with room for a suffix such as ".json"


def validate_id(value: object, what: str = "id") -> str:
    """Return ``value`` unchanged if it is a valid id, else raise :class:`InvalidIdError`.

    A valid id is a string of 1 to 256 characters with no control character (NUL, newline,
    tab, DEL, ...) and no lone surrogate (it must be encodable as UTF-8).
    """
    if not isinstance(value, str):
        msg = f"{what} must be a string, got {type(value).__name__}"
        raise InvalidIdError(msg)
    if not value:
        msg = f"{what} must not be empty"
        raise InvalidIdError(msg)
    if len(value) > MAX_ID_LENGTH:
        msg = f"{what} is {len(value)} characters long; the limit is {MAX_ID_LENGTH}"
        raise InvalidIdError(msg)
    bad = _NOT_ALLOWED.search(value)
    if bad is not None:
        msg = (
            f"{what} {value[:40]!r} contains {bad.group()!r} at position {bad.start()}; "
            "ids may not contain control characters or lone surrogates"
        )
        raise InvalidIdError(msg)
    return value


def _encode_char(match: re.Match[str]) -> str:
    char = match.group()
    if char.isprintable() and not char.isspace() and not char.isascii():
        return char  # readable non-ASCII text stays as it is ("café", "東京")
    return "".join(f"%{byte:02X}" for byte in char.encode())


def encode_part(value: str, what: str = "id") -> str:
    """The key part for id ``value`` (validated): special characters become ``%XX``."""
    validate_id(value, what)
    return _MAYBE_SPECIAL.sub(_encode_char, value)


def decode_part(part: str) -> str:
    """The id a key part was encoded from (the inverse of :func:`encode_part`)."""
    return unquote(part, errors="strict")


def glob_escape(text: str) -> str:
    """``text`` with every glob character escaped, so a SCAN pattern matches it literally."""
    return _GLOB.sub(r"\\\1", text)


def path_part(value: str, what: str = "id") -> str:
    """A file or folder name for id ``value``: one path component, distinct for each id.

    Letters, digits, ``-``, ``_`` and ``.`` stay; everything else (``/``, ``%``, spaces,
    ``~``, non-ASCII) is percent-encoded, and so is a leading dot: the result is never ``.``,
    ``..`` or a hidden file. A name that would exceed 200 bytes is cut and ends with ``~`` and
    a SHA-256 digest of the id (``~`` never appears otherwise).
    """
    validate_id(value, what)
    name = quote(value, safe="").replace("~", "%7E")
    if name.startswith("."):
        name = "%2E" + name[1:]
    if len(name) > _PATH_MAX_BYTES:
        digest = hashlib.sha256(value.encode()).hexdigest()[:32]
        name = f"{name[: _PATH_MAX_BYTES - 33]}~{digest}"
    return name


@dataclass(frozen=True, slots=True)
class Keyspace:
    """The Redis key layout of one namespace (one run, one tenant, one test)."""

    namespace: str
    _prefix: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The namespace is a hash tag: every key of one namespace maps to one cluster slot,
        # so a Lua script may touch any of them. Encoded, it can never contain a brace.
        tag = encode_part(self.namespace, "namespace")
        object.__setattr__(self, "_prefix", f"agentmem:{{{tag}}}")

    def _key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    def pattern(self) -> str:
        """A SCAN pattern matching every key of this namespace and of no other."""
        return glob_escape(self._key("")) + "*"

    # facts
    def fact_seq(self) -> str:
        return self._key("fact", "seq")

    def fact_records(self) -> str:
        """Hash from fact id to the fact's JSON record."""
        return self._key("fact", "records")

    def category(self, category: str) -> str:
        return self._key("category", encode_part(category, "category"))

    def categories(self) -> str:
        return self._key("categories")

    def idempotency(self) -> str:
        """Hash from idempotency key to the fact id it produced."""
        return self._key("fact", "idem")

    # status
    def status(self, agent_id: str) -> str:
        return self.status_prefix() + encode_part(agent_id, "agent_id")

    def status_prefix(self) -> str:
        """Prefix of every status key; a Lua script appends the *encoded* agent id."""
        return self._key("status", "")

    def live_agents(self) -> str:
        """Sorted set of encoded agent ids scored by the time their status expires."""
        return self._key("agents")

    # locks
    def lock(self, resource: str) -> str:
        return self._key("lock", encode_part(resource, "resource"))

    def replication_fence(self) -> str:
        """A short-lived key written to learn when replicas have caught up (memory.replication)."""
        return self._key("replication", "fence")

    # semaphores
    def semaphore(self, name: str) -> str:
        """Sorted set of a semaphore's permits, scored by when each one's lease ends."""
        return self._key("semaphore", encode_part(name, "semaphore"))

    # streams
    def stream(self, name: str) -> str:
        return self._key("stream", encode_part(name, "stream"))

    def route(self, stream: str, route: str) -> str:
        """The stream of one route of stream ``stream`` (memory.events).

        Its own kind of key, with the stream and the route as two encoded parts: an encoded
        part never contains ``:``, so no stream name and no other (stream, route) pair can
        produce it (``a.b`` + ``c`` and ``a`` + ``b.c`` differ, and a stream named ``run.writer``
        is not route ``writer`` of ``run``).
        """
        return self._key("route", encode_part(stream, "stream"), encode_part(route, "route"))

    def publish_keys(self, name: str) -> str:
        """Hash from publish idempotency key to the entry id it produced."""
        return self._key("published", encode_part(name, "stream"))

    def dead_letters(self, name: str) -> str:
        return self._key("dlq", encode_part(name, "stream"))

    # the service: a pooled run's submission (see memory.admission)
    def submission(self) -> str:
        """The run's submission record: which tenant submitted it (set once, NX)."""
        return self._key("submission")


# The run index lives outside every namespace (no namespace's SCAN pattern matches it) and in
# one hash slot, so the list and the records change together on a cluster.
RUN_INDEX_ORDER = "agentmem-runs:{index}:order"
RUN_INDEX_RECORDS = "agentmem-runs:{index}:records"


def run_index_tenant_order(tenant: str) -> str:
    """The run index's order of one tenant's runs (in the index's hash slot)."""
    return f"agentmem-runs:{{index}}:tenant:{encode_part(tenant, 'tenant')}:order"


# The service's shared queues live outside every namespace, each in a hash slot of its own, so
# that on a cluster their load spreads over the primaries (see memory.work_queue).
def _work(queue: str, shard: int) -> str:
    return f"agentmem-work:{{{encode_part(queue, 'queue')}-{int(shard)}}}"


def work_lane(queue: str, shard: int, tenant: str) -> str:
    """One tenant's tickets on shard ``shard`` of work queue ``queue``: a stream in the
    shard's slot (every lane of a shard shares its hash tag)."""
    return f"{_work(queue, shard)}:lane:{encode_part(tenant, 'tenant')}"


def work_lanes(queue: str, shard: int) -> str:
    """The set of tenants that have a lane on the shard (same slot as the shard)."""
    return f"{_work(queue, shard)}:lanes"


def work_bell(queue: str, shard: int) -> str:
    """A short stream that gets an entry whenever a ticket is added to the shard: what an idle
    worker blocks on (same slot as the shard)."""
    return f"{_work(queue, shard)}:bell"


def work_dead_letters(queue: str, shard: int) -> str:
    """The dead letters of one shard of a work queue (same slot as the shard)."""
    return f"{_work(queue, shard)}:dlq"


def tenant_key(tenant: str, part: str) -> str:
    """One of a tenant's admission keys (``inflight``, ``queue``, ``requests``): all in the
    tenant's own slot, so one script admits or releases a run atomically."""
    return f"agentmem-tenant:{{{encode_part(tenant, 'tenant')}}}:{part}"


@dataclass(frozen=True, slots=True)
class TenantKeys:
    """A tenant's shared keys outside any run: its semaphores (a cap across all its runs),
    in the tenant's own slot, beside its admission keys."""

    tenant: str

    def semaphore(self, name: str) -> str:
        """Sorted set of a tenant-wide semaphore's permits (see :mod:`memory.semaphore`)."""
        return tenant_key(self.tenant, f"semaphore:{encode_part(name, 'semaphore')}")


TENANTS = "agentmem-tenants:{tenants}:all"  # the set of tenants that ever submitted (metrics)


def workers_key(queue: str) -> str:
    """Hash of a queue's live workers: worker name -> its slots and heartbeat (metrics)."""
    return f"agentmem-workers:{{{encode_part(queue, 'queue')}}}:live"
