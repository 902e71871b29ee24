"""Shared facts, indexed by category: one round trip to store a batch, one to read a category.

Layout (keys from :class:`~memory.keys.Keyspace`): a counter allocates fact ids; one hash maps
id to the fact's JSON record; one sorted set per category holds its fact ids (score = id, so a
category reads back in id order); a hash maps idempotency keys to the id they produced.

The article stores a fact with INCR, then HSET, then SADD (three round trips, and a crash
between them leaves a half-written fact) and reads a category with SMEMBERS followed by one
HGETALL per fact. Here a Lua script stores any number of facts atomically in one round trip,
and another reads a whole category in one, however many facts it holds. Metadata is kept as
JSON, so its types survive the round trip.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, cast

from memory._boundary import translate_errors
from memory._codec import as_str, check_text, encode_json, json_text, utc_now
from memory.connections import RedisClient
from memory.errors import InvalidValueError
from memory.keys import Keyspace, validate_id
from memory.limits import Limits

_STORE = """
-- KEYS: 1 id counter, 2 records hash, 3 idempotency hash, 4 categories set, 5.. category sets
-- ARGV: 4 per fact: category-key index, category, idempotency key ('' for none), record JSON
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
-- KEYS: 1 category set, 2 records hash. Returns id1, record1, id2, record2, ... in id order.
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {}
for first = 1, #ids, 4000 do
  local chunk = {}
  for i = first, math.min(first + 3999, #ids) do chunk[#chunk + 1] = ids[i] end
  local records = redis.call('HMGET', KEYS[2], unpack(chunk))
  for i = 1, #chunk do
    out[#out + 1] = chunk[i]
    out[#out + 1] = records[i]
  end
end
return out
"""


@dataclass(frozen=True, slots=True)
class NewFact:
    """A fact to store. With an idempotency key, storing it again returns the first id."""

    fact: str
    category: str
    metadata: Mapping[str, Any] | None = None
    idempotency_key: str | None = None


class Fact(NamedTuple):
    """A stored fact (an immutable record: a tuple, so that reading 100,000 stays cheap)."""

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
        self._store = client.register_script(_STORE)
        self._read_category = client.register_script(_READ_CATEGORY)

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
        keys, args = self._script_input(agent_id, facts)
        ids = await self._store(keys=keys, args=args)
        return [int(i) for i in ids]

    def check_facts(self, agent_id: str, facts: Sequence[NewFact]) -> None:
        """Raise what :meth:`store_facts` would raise for this batch, without sending it.

        For writers that keep a batch before sending it (a write-ahead log): a batch that
        passes here is never refused later for what it holds.
        """
        if facts:
            self._script_input(agent_id, facts)
        else:
            validate_id(agent_id, "agent_id")

    def _script_input(
        self, agent_id: str, facts: Sequence[NewFact]
    ) -> tuple[list[str], list[str | int]]:
        """The store script's keys and arguments, after checking every fact of the batch."""
        validate_id(agent_id, "agent_id")
        now = utc_now().isoformat()
        category_keys: dict[str, int] = {}
        category_key_names: list[str] = []
        args: list[str | int] = []
        for position, new in enumerate(facts):
            if not isinstance(new, NewFact):
                msg = f"facts[{position}] is a {type(new).__name__}, not a NewFact"
                raise InvalidValueError(msg)
            index = category_keys.get(new.category) if isinstance(new.category, str) else None
            if index is None:  # validate and build each category's key once per batch
                category_key_names.append(self._keys.category(new.category))
                index = category_keys[new.category] = len(category_keys) + 5
            record = _record(new, agent_id, now, self._limits)
            args += [index, new.category, new.idempotency_key or "", record]
        keys = [
            self._keys.fact_seq(),
            self._keys.fact_records(),
            self._keys.idempotency(),
            self._keys.categories(),
            *category_key_names,
        ]
        return keys, args

    async def get_facts_by_category(self, category: str) -> list[Fact]:
        """Every fact of a category, in id order, in one round trip."""
        keys = [self._keys.category(category), self._keys.fact_records()]
        flat = await self._read_category(keys=keys)
        return parse_records(flat[::2], flat[1::2])

    async def get_facts(self, ids: Sequence[int]) -> list[Fact]:
        """The facts with these ids (unknown ids are skipped), in the order asked, in one call."""
        if not ids:
            return []
        records = await self._client.hmget(self._keys.fact_records(), [str(i) for i in ids])
        return [_parse(i, r) for i, r in zip(ids, records, strict=True) if r is not None]

    async def list_categories(self) -> list[str]:
        """Every category that holds at least one fact, sorted."""
        return sorted(as_str(c) for c in await self._client.smembers(self._keys.categories()))

    async def count_facts(self) -> int:
        """How many facts this namespace holds."""
        return int(await self._client.hlen(self._keys.fact_records()))


def _record(new: NewFact, agent_id: str, timestamp: str, limits: Limits) -> str:
    """The fact's JSON record, after checking its text, idempotency key and metadata."""
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
    encoded = encode_json(
        dict(metadata),
        f"metadata of fact {text[:40]!r}",
        max_bytes=limits.fact_metadata_bytes,
        max_depth=limits.json_depth,
    )
    head = {"fact": text, "category": new.category, "agent_id": agent_id, "timestamp": timestamp}
    return f'{json_text(head)[:-1]}, "metadata": {encoded}}}'


def parse_records(ids: Sequence[Any], raws: Sequence[bytes | str | None]) -> list[Fact]:
    """Typed facts from ids and their raw JSON records (missing records are skipped)."""
    present = [int(i) for i, raw in zip(ids, raws, strict=True) if raw is not None]
    return [_fact(i, r) for i, r in zip(present, _loads_all(raws), strict=True)]


def _loads_all(raws: Sequence[bytes | str | None]) -> list[dict[str, Any]]:
    """Parse many JSON records with one ``json.loads`` call (twice as fast as one per record)."""
    present = [raw for raw in raws if raw is not None]
    if present and isinstance(present[0], str):  # a client created with decode_responses
        records: list[dict[str, Any]] = json.loads("[" + ",".join(cast(list[str], present)) + "]")
    else:
        records = json.loads(b"[" + b",".join(cast(list[bytes], present)) + b"]")
    return records


def _parse(fact_id: int, raw: bytes | str) -> Fact:
    return _fact(fact_id, json.loads(as_str(raw)))


def _fact(fact_id: int, record: dict[str, Any]) -> Fact:
    return Fact(
        id=fact_id,
        fact=record["fact"],
        category=record["category"],
        agent_id=record["agent_id"],
        timestamp=datetime.fromisoformat(record["timestamp"]),
        metadata=record["metadata"],
    )
