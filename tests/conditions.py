"""Waiting in tests for an observable state instead of for a guessed number of seconds.

A test that sleeps and then asserts guesses how long the system takes: too short on a loaded
machine and it fails, long enough everywhere and it is slow. These ask the system instead,
until the state appears (bounded, so a state that never comes fails the test).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T]], within: float = 10) -> T:
    """``await check()``'s first truthy result, asked again every 10 ms for up to ``within``
    seconds."""
    with anyio.fail_after(within):
        while not (result := await check()):
            await anyio.sleep(0.01)
    return result


async def until(predicate: Callable[[], object], within: float = 10) -> None:
    """Return once ``predicate()`` (a state this process holds) is true, checking every 10 ms
    for up to ``within`` seconds."""
    with anyio.fail_after(within):
        while not predicate():
            await anyio.sleep(0.01)
