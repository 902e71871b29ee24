"""``async with`` for the stores: whoever opens a resource closes it, by ``aclose()``."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class AsyncResource:
    """Base of every store: ``async with store:`` calls :meth:`aclose` on the way out."""

    async def aclose(self) -> None:
        """Release what this object owns (a subclass overrides it)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
