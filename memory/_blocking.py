"""Blocking stream reads that a healthy server always answers within the command timeout.

A client waits ``command_timeout`` (its socket timeout) for each reply, and a blocking read
(``XREAD``/``XREADGROUP BLOCK``) is only answered when an entry arrives or its block ends: a
block longer than the socket timeout on an idle stream would look like a silent server.
So a long block is sent as several shorter ones, each at most half the socket timeout
(:func:`block_slices`); the whole read still ends once ``block_ms`` has passed, so it takes at
most ``block_ms`` plus one command timeout. Splitting loses nothing: each piece returns as soon
as an entry arrives, and nothing is delivered between pieces that the next one would not see.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from agentmem.memory.connections import RedisClient


def longest_block_ms(client: RedisClient) -> int | None:
    """The longest ``BLOCK`` one call on ``client`` may ask for (``None``: no socket timeout)."""
    timeout = client.get_connection_kwargs().get("socket_timeout")
    if not isinstance(timeout, int | float) or timeout <= 0:
        return None
    return max(1, int(timeout * 1000) // 2)


def block_slices(client: RedisClient, block_ms: int) -> Iterator[int | None]:
    """The ``BLOCK`` of each call of a read that waits up to ``block_ms`` in all; the caller
    stops asking once it got something. ``block_ms`` <= 0: one call that does not block."""
    if block_ms <= 0:
        yield None
        return
    longest = longest_block_ms(client)
    deadline = time.monotonic() + block_ms / 1000
    left = block_ms
    while left > 0:
        yield left if longest is None else min(left, longest)
        left = int((deadline - time.monotonic()) * 1000)
