"""Shared facts, indexed by category: one round trip to store a batch, one to read a category.

Layout (keys from :class:`~memory.keys.Keyspace`): a counter allocates fact ids; one hash maps
id to the fact's JSON record (which holds the id too, so that records decode on their own);
one sorted set per category holds its fact ids (score = id, so a category reads back in id
order); a hash maps idempotency keys to the id they produced.

The article stores a fact with INCR, then HSET, then SADD (three round trips, and a crash
between them leaves a half-written fact) and reads a category with SMEMBERS followed by one
HGETALL per fact. Here a Lua script stores any number of facts atomically in one round trip,
and another reads a whole category in one, however many facts it holds: it joins the records
into one JSON array on the server, which the client decodes in one call (msgspec, in C)
straight into :class:`Fact`. Metadata is kept as JSON, so its types survive the round trip.

**Storing twice.** Every fact is stored under an idempotency key: the caller's, or else one
chosen here for the call (``auto-<random>.<position>``) before anything is sent. The store
script returns a key's first id instead of storing again, so a batch sent again after its
reply was lost (the one retry :mod:`memory._boundary` makes on a dropped connection) stores
nothing new and returns the first ids. (Each key costs a field in the idempotency hash, as a
caller's key does.)
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from agentmem.memory import telemetry
from agentmem.memory._boundary import idempotent, translate_errors
from agentmem.memory._codec import as_str, check_text, encode_json_bytes, json_text, utc_now
from agentmem.memory._scripts import LuaScript
from agentmem.memory.connections import RedisClient
from agentmem.memory.errors import InvalidValueError, StoreError
from agentmem.memory.keys import Keyspace, validate_id
from agentmem.memory.limits import Limits

_STORE = """
-- KEYS: 1 id counter, 2 records hash, 3 idempotency hash, 4 categories set, 5.. category sets
-- ARGV: 4 per fact: category-key index, category, idempotency key ('' for none), record JSON
-- (an object, stored with the fact's id added as its first field)
local ids = {}
for i = 0, #ARGV / 4 - 1 do
  local key_index, category = tonumber(ARGV[i * 4 + 1]), ARGV[i * 4 + 2]
  local idem, record = ARGV[i * 4 + 3], ARGV[i * 4 + 4]
  local id = false
  if idem ~= '' then id = redis.call('HGET', KEYS[3], idem) end
  if id then
    ids[i + 1] = tonumber(id)
  else
    id = redis.call('INCR', KEYS[1])
    record = '{"id":' .. string.format('%d', id) .. ',' .. string.sub(record, 2)
    redis.call('HSET', KEYS[2], id, record)
    redis.call('ZADD', KEYS[key_index], id, id)
    redis.call('SADD', KEYS[4], category)
    if idem ~= '' then redis.call('HSET', KEYS[3], idem, id) end
    ids[i + 1] = id
  end
end
return ids
"""

_READ_CATEGORY = """
-- KEYS: 1 category set, 2 records hash. Returns one JSON array of the category's records, in
-- id order: one string, which the client decodes at once (far cheaper than a reply element
-- per fact). Records written before they held their id get it here.
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local parts = {}
for first = 1, #ids, 4000 do
  local chunk = {}
  for i = first, math.min(first + 3999, #ids) do chunk[#chunk + 1] = ids[i] end
  local records = redis.call('HMGET', KEYS[2], unpack(chunk))
  for i = 1, #chunk do
    local record = records[i]
    if record then
      if string.find(record, '^{"id":') == nil then
        record = '{"id":' .. chunk[i] .. ',' .. string.sub(record, 2)
      end
      parts[#parts + 1] = record
    end
  end
end
return '[' .. table.concat(parts, ',') .. ']'
"""


_CATEGORY_KEYS_CACHED = 1024  # category keys kept encoded per store


@dataclass(frozen=True, slots=True)
class NewFact:
    """A fact to store. With an idempotency key, storing it again returns the first id."""

    fact: str
    category: str
    metadata: Mapping[str, Any] | None = None
    idempotency_key: str | None = None


class Fact(msgspec.Struct, frozen=True, gc=False):
    """A stored fact: an immutable record, decoded straight from the stored JSON.

    Built positionally or by keyword, compared by value. (A msgspec struct: reading 10,000
    facts decodes them in C, without a dict per fact on the way. ``gc=False``: a fact holds
    JSON data only, which cannot form reference cycles.)
    """

    id: int
    fact: str
    category: str
    agent_id: str
    timestamp: datetime
    metadata: dict[str, Any]


@translate_errors
class FactStore:
    """Facts shared by every agent of one namespace."""

    def __init__(
        self, client: RedisClient, keys: Keyspace, *, limits: Limits | None = None
    ) -> None:
        self._client = client
        self._keys = keys
        self._limits = limits or Limits()
        self._store = LuaScript(client, _STORE)
        self._read_category = LuaScript(client, _READ_CATEGORY)
        # The keys every store call sends, encoded once; category keys as they are met.
        self._fixed_keys = [
            keys.fact_seq().encode(),
            keys.fact_records().encode(),
            keys.idempotency().encode(),
            keys.categories().encode(),
        ]
        self._category_keys: dict[str, bytes] = {}

    async def store_fact(
        self,
        agent_id: str,
        fact: str,
        category: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> int:
        """Store one fact in one round trip; returns its id."""
        ids = await self.store_facts(agent_id, [NewFact(fact, category, metadata, idempotency_key)])
        return ids[0]

    async def store_facts(self, agent_id: str, facts: Sequence[NewFact]) -> list[int]:
        """Store a batch atomically in one round trip; returns the ids in input order.

        The whole batch is checked first: one invalid fact raises
        :class:`~memory.errors.InvalidIdError` or :class:`InvalidValueError` and stores none.
        """
        if not facts:
            validate_id(agent_id, "agent_id")
            return []
        call = f"auto-{secrets.token_hex(12)}"  # keys the facts the caller left without one
        keys, args = self._script_input(agent_id, facts, call)
        with telemetry.operation(
            "facts.store", "redis", self._keys.namespace, agent_id=agent_id, count=len(facts)
        ):
            return await self._send(keys, args)

    @idempotent  # every fact carries a key chosen before the first attempt
    async def _send(self, keys: list[bytes], args: list[str | bytes | int]) -> list[int]:
        return [int(i) for i in await self._store(keys, args)]

    def check_facts(self, agent_id: str, facts: Sequence[NewFact]) -> None:
        """Raise what :meth:`store_facts` would raise for this batch, without sending it.

        For writers that keep a batch before sending it (a write-ahead log): a batch that
        passes here is never refused later for what it holds.
        """
        if facts:
            self._script_input(agent_id, facts, "check")
        else:
            validate_id(agent_id, "agent_id")

    def _script_input(
        self, agent_id: str, facts: Sequence[NewFact], call: str
    ) -> tuple[list[bytes], list[str | bytes | int]]:
        """The store script's keys and arguments, after checking every fact of the batch; a
        fact without an idempotency key gets ``<call>.<position>``."""
        validate_id(agent_id, "agent_id")
        head = b',"agent_id":' + json_text(agent_id) + b',"timestamp":"' + _now() + b'"'
        category_keys: dict[str, int] = {}
        keys = self._fixed_keys.copy()
        args: list[str | bytes | int] = []
        for position, new in enumerate(facts):
            if not isinstance(new, NewFact):
                msg = f"facts[{position}] is a {type(new).__name__}, not a NewFact"
                raise InvalidValueError(msg)
            index = category_keys.get(new.category) if isinstance(new.category, str) else None
            if index is None:  # validate and build each category's key once per batch
                keys.append(self._category_key(new.category))
                index = category_keys[new.category] = len(category_keys) + 5
            record = _record(new, head, self._limits)
            args += [index, new.category, new.idempotency_key or f"{call}.{position}", record]
        return keys, args

    def _category_key(self, category: str) -> bytes:
        """The category's key (validated and encoded once per category, up to a bound)."""
        key = self._category_keys.get(category) if type(category) is str else None
        if key is None:
            key = self._keys.category(category).encode()
            if len(self._category_keys) >= _CATEGORY_KEYS_CACHED:
                self._category_keys.clear()
            self._category_keys[category] = key
        return key

    @idempotent
    async def get_facts_by_category(self, category: str) -> list[Fact]:
        """Every fact of a category, in id order, in one round trip."""
        keys = [self._keys.category(category), self._keys.fact_records()]
        with telemetry.operation(
            "facts.read", "redis", self._keys.namespace, category=category
        ) as span:
            facts = _decode(await self._read_category(keys))
            telemetry.set_attributes(span, {"agentmem.count": len(facts)})
            return facts

    @idempotent
    async def get_facts(self, ids: Sequence[int]) -> list[Fact]:
        """The facts with these ids (unknown ids are skipped), in the order asked, in one call."""
        if not ids:
            return []
        records = await self._client.hmget(self._keys.fact_records(), [str(i) for i in ids])
        return parse_records(ids, records)

    @idempotent
    async def list_categories(self) -> list[str]:
        """Every category that holds at least one fact, sorted."""
        return sorted(as_str(c) for c in await self._client.smembers(self._keys.categories()))

    @idempotent
    async def count_facts(self) -> int:
        """How many facts this namespace holds."""
        return int(await self._client.hlen(self._keys.fact_records()))


def _now() -> bytes:
    return utc_now().isoformat().encode()


def _record(new: NewFact, head: bytes, limits: Limits) -> bytes:
    """The fact's JSON record, after checking its text, idempotency key and metadata.

    ``head`` holds the record's fields shared by the batch (agent id and timestamp).
    """
    text = check_text(new.fact, "fact text", limits.fact_text_bytes)
    if not text.strip():
        msg = "fact text is blank; a fact must say something"
        raise InvalidValueError(msg)
    if new.idempotency_key is not None:
        validate_id(new.idempotency_key, "idempotency_key")
    metadata = {} if new.metadata is None else new.metadata
    if not isinstance(metadata, Mapping):
        msg = f"metadata of fact {text[:40]!r} is a {type(metadata).__name__}, not a mapping"
        raise InvalidValueError(msg)
    encoded = encode_json_bytes(
        metadata if type(metadata) is dict else dict(metadata),
        f"metadata of fact {text[:40]!r}",
        max_bytes=limits.fact_metadata_bytes,
        max_depth=limits.json_depth,
    )
    return b"".join(
        (
            b'{"fact":',
            json_text(text),
            b',"category":',
            json_text(new.category),
            head,
            b',"metadata":',
            encoded,
            b"}",
        )
    )


_DECODER = msgspec.json.Decoder(list[Fact])


def _decode(blob: bytes | str) -> list[Fact]:
    """Typed facts from one JSON array of records, each with its ``id``."""
    try:
        return _DECODER.decode(blob)
    except msgspec.DecodeError as exc:
        msg = f"stored fact records are not valid: {exc}"
        raise StoreError(msg) from exc


def parse_records(ids: Sequence[Any], raws: Sequence[bytes | str | None]) -> list[Fact]:
    """Typed facts from ids and their raw JSON records (missing records are skipped).

    The records are decoded together, as one JSON array, straight into :class:`Fact`; a record
    written before records held their id gets it from ``ids``.
    """
    parts = [_with_id(i, raw) for i, raw in zip(ids, raws, strict=True) if raw is not None]
    return _decode(b"[" + b",".join(parts) + b"]")


def _with_id(fact_id: Any, raw: bytes | str) -> bytes:
    record = raw if isinstance(raw, bytes) else raw.encode()
    if record.startswith(b'{"id":'):
        return record
    return b'{"id":%d,%b' % (int(fact_id), record[1:])
