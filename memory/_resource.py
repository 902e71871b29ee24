"""``async with`` for the stores, and who closes what: whoever opens a resource closes it.

A store built on a client or pool it was handed owns nothing and closes nothing. The opener
(:func:`memory.layer.open_memory`) creates the clients, hands them to the stores, and
registers their ``aclose`` with :meth:`AsyncResource.own`, so that closing it closes them, in
the reverse order of opening.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self


class AsyncResource:
    """Base of every store: ``async with store:`` calls :meth:`aclose` on the way out."""

    _closers: list[Callable[[], Awaitable[object]]]

    def own(self, closer: Callable[[], Awaitable[object]]) -> None:
        """Make :meth:`aclose` await ``closer`` (last owned, first closed)."""
        if not hasattr(self, "_closers"):
            self._closers = []
        self._closers.append(closer)

    async def aclose(self) -> None:
        """Close what this object owns, newest first; every closer runs even if one fails."""
        closers, self._closers = getattr(self, "_closers", []), []
        error: BaseException | None = None
        for closer in reversed(closers):
            try:
                await closer()
            except Exception as exc:  # close the rest, then report the first failure
                error = error or exc
        if error is not None:
            raise error

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
