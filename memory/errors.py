"""The project's exceptions: one base, narrow subclasses, each under the nearest built-in."""

from __future__ import annotations


class AgentMemoryError(Exception):
    """Base class for every error this project raises on purpose."""


class InvalidIdError(AgentMemoryError, ValueError):
    """An id, namespace or other key part is empty, too long, or has a forbidden character."""


class InvalidValueError(AgentMemoryError, ValueError):
    """A value to store is not acceptable (empty text, metadata that is not JSON, ...)."""


class ConflictError(AgentMemoryError):
    """A versioned write found a different version than the one it expected."""

    def __init__(self, key: str, expected: int | None, actual: int | None) -> None:
        self.key = key
        self.expected = expected
        self.actual = actual
        msg = (
            f"version conflict on {key!r}: expected version {expected}, found {actual}; "
            "read the document again and retry the change"
        )
        super().__init__(msg)


class StaleFencingTokenError(AgentMemoryError):
    """A write carried a fencing token lower than one already accepted for that key."""

    def __init__(self, key: str, token: int, highest: int) -> None:
        self.key = key
        self.token = token
        self.highest = highest
        msg = (
            f"write to {key!r} rejected: fencing token {token} is older than {highest}; "
            "the lock this write relied on was lost to another holder"
        )
        super().__init__(msg)


class UnissuedFencingTokenError(AgentMemoryError):
    """A write carried a fencing token no grant was ever given: forged, or from another
    database."""

    def __init__(self, key: str, token: int) -> None:
        self.key = key
        self.token = token
        msg = (
            f"write to {key!r} rejected: fencing token {token} was never issued; pass the token "
            "of a lock you hold (held.fencing_token)"
        )
        super().__init__(msg)


class UnfencedWriteError(AgentMemoryError):
    """A write without a fencing token, to a key that earlier writes fenced with one."""

    def __init__(self, key: str, highest: int) -> None:
        self.key = key
        self.highest = highest
        msg = (
            f"write to {key!r} rejected: it carries no fencing token, but the key is written "
            f"under a lock (highest token {highest}); hold the lock and pass its fencing_token"
        )
        super().__init__(msg)


class LockLostError(AgentMemoryError):
    """A lease expired or was taken by another holder while it was believed held."""


class PermitLostError(LockLostError):
    """A semaphore permit's lease ended (or it was found gone) while it was believed held."""


class LockTimeoutError(AgentMemoryError, TimeoutError):
    """A lock could not be acquired within the time allowed."""


class SemaphoreTimeoutError(LockTimeoutError):
    """No place in a semaphore came free within the time allowed."""


class PoisonMessageError(AgentMemoryError, ValueError):
    """A stream entry is not a valid event and cannot be processed."""


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc`` and its nested exception groups, or ``exc`` itself."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


class ServerUnavailableError(AgentMemoryError, ConnectionError):
    """Redis or PostgreSQL cannot be reached, or did not answer in time (retry later)."""


class StoreError(AgentMemoryError, RuntimeError):
    """Redis or PostgreSQL refused an operation for a reason other than an outage."""


class WalFullError(AgentMemoryError, OSError):
    """The local write-ahead log could not grow (its disk is full): the write was not logged."""


class WalBusyError(AgentMemoryError, BlockingIOError):
    """A write-ahead log file is held by another live process (its owner, or an adopter)."""


class InvalidConfigError(AgentMemoryError, ValueError):
    """A server URL or credential is unusable (retrying will not help: fix the setting)."""


class DeliveryLostError(AgentMemoryError):
    """A consumer acted on a stream entry that is no longer its own (another worker reclaimed
    it after it stalled, or it was already acknowledged or dead-lettered)."""


class QueueFullError(AgentMemoryError, RuntimeError):
    """A tenant's queue of waiting runs is full: the submission was refused, not accepted."""

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
