"""Lua scripts run by EVALSHA on the shared client, in one round trip (internal).

redis-py's ``Script`` does the same with a few more layers per call (argument tuples, an
import, a pipeline check); on the hot paths (storing a fact, taking and releasing a lock)
those layers cost a noticeable share of a loopback round trip. The script is loaded by
redis-py's ``Script`` the first time the server answers NOSCRIPT (a new or flushed server, a
new cluster primary), and the call is then made again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from agentmem.memory.connections import RedisClient


class LuaScript:
    """One Lua script of a store, bound to the store's client."""

    def __init__(self, client: RedisClient, source: str) -> None:
        self._client = client
        self._script = client.register_script(source)
        self._sha = self._script.sha

    async def __call__(
        self, keys: Sequence[str | bytes], args: Sequence[str | bytes | int] = ()
    ) -> Any:
        """The script's reply; keys first (a cluster client routes the call by them)."""
        try:
            return await self._client.execute_command("EVALSHA", self._sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self._script(keys=list(keys), args=list(args))
