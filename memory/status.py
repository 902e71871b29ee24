"""Agent status with a TTL heartbeat: an agent that stops beating disappears by itself.

Each status is a JSON string that expires after its TTL, and a sorted set scores every agent
id by the time its status expires, so listing the live agents is one script: drop the expired
members, then read the rest. Both scripts take the time from the Redis server, so clients
with skewed clocks agree on who is alive. (The article's status never expires: a crashed agent
looks busy forever.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from agentmem.memory._boundary import idempotent, translate_errors
from agentmem.memory._codec import as_str, check_text, ttl_ms
from agentmem.memory._scripts import LuaScript
from agentmem.memory.connections import RedisClient
from agentmem.memory.keys import Keyspace, decode_part, encode_part
from agentmem.memory.limits import Limits

_SET = """
-- KEYS: 1 status key, 2 live-agents zset. ARGV: 1 encoded agent id, 2 ttl ms, 3 status, 4 detail
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
local ttl_ms = tonumber(ARGV[2])
local status = cjson.encode({status = ARGV[3], detail = ARGV[4], updated_ms = now_ms,
                             expires_ms = now_ms + ttl_ms})
redis.call('SET', KEYS[1], status, 'PX', ttl_ms)
redis.call('ZADD', KEYS[2], now_ms + ttl_ms, ARGV[1])
return status
"""

_LIVE = """
-- KEYS: 1 live-agents zset. ARGV: 1 status key prefix. Returns id1, status1, id2, ...
-- The zset holds encoded agent ids: prefix .. member is the agent's status key.
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {}
for _, id in ipairs(ids) do
  local status = redis.call('GET', ARGV[1] .. id)
  if status then
    out[#out + 1] = id
    out[#out + 1] = status
  end
end
return out
"""


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """What an agent last said it was doing, and until when that holds."""

    agent_id: str
    status: str
    detail: str
    updated_at: datetime
    expires_at: datetime


@translate_errors
class StatusBoard:
    """The status of every agent in one namespace."""

    def __init__(
        self, client: RedisClient, keys: Keyspace, *, limits: Limits | None = None
    ) -> None:
        self._client = client
        self._keys = keys
        self._limits = limits or Limits()
        self._set = LuaScript(client, _SET)
        self._live = client.register_script(_LIVE)

    @idempotent  # a SET, a read or a DEL: running it twice changes nothing more
    async def set_agent_status(
        self, agent_id: str, status: str, detail: str = "", ttl_seconds: float = 15.0
    ) -> AgentStatus:
        """Publish an agent's status; it expires after ``ttl_seconds`` unless set again."""
        member = encode_part(agent_id, "agent_id")
        cap = self._limits.status_bytes
        args: list[str | int] = [member, ttl_ms(ttl_seconds), check_text(status, "status", cap)]
        args.append(check_text(detail, "status detail", cap))
        keys = [self._keys.status(agent_id), self._keys.live_agents()]
        raw = await self._set(keys, args)
        return _parse(agent_id, raw)

    @idempotent  # a SET, a read or a DEL: running it twice changes nothing more
    async def get_agent_status(self, agent_id: str) -> AgentStatus | None:
        """An agent's live status, or None once it expired."""
        raw = await self._client.get(self._keys.status(agent_id))
        return None if raw is None else _parse(agent_id, raw)

    @idempotent  # a SET, a read or a DEL: running it twice changes nothing more
    async def list_live_agents(self) -> list[AgentStatus]:
        """Every agent whose status has not expired, sorted by id, in one round trip."""
        flat = await self._live(keys=[self._keys.live_agents()], args=[self._keys.status_prefix()])
        pairs = zip(flat[::2], flat[1::2], strict=True)
        statuses = [_parse(decode_part(as_str(member)), raw) for member, raw in pairs]
        return sorted(statuses, key=lambda s: s.agent_id)


def _parse(agent_id: str, raw: bytes | str) -> AgentStatus:
    record = json.loads(as_str(raw))
    return AgentStatus(
        agent_id=agent_id,
        status=record["status"],
        detail=record["detail"],
        updated_at=_from_ms(record["updated_ms"]),
        expires_at=_from_ms(record["expires_ms"]),
    )


def _from_ms(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
