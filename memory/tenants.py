"""Tenants' API keys: created once, stored only as salted hashes, checked in constant time.

A key reads ``am_<key_id>_<secret>``: the key id (12 hex digits) is its public half, what
``agentmem tenants list`` and the audit log show; the secret (43 URL-safe characters, 256
random bits) is shown once, when the key is made, and never stored. PostgreSQL keeps, per key,
a random salt and ``HMAC-SHA256(salt, secret)`` (table ``tenant_keys``, migration 0004). The
secret is random, not a password a person chose, so a fast hash is enough: nobody can try
2^256 secrets against a stolen row, and a slow one would tax every request.

**Checking a key** (:meth:`TenantKeys.verify`) does the same work whatever is presented: one
query by key id (for a malformed key, a key id that cannot exist), one HMAC over the presented
secret with the row's salt (or a fixed dummy salt when there is no row), and one
:func:`hmac.compare_digest` with the row's hash (or a dummy hash). A wrong secret, an unknown
key id and a right key cost the same, so the time an answer takes says nothing about which
part was wrong. A revoked key is refused by the next request: nothing is cached.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from agentmem.memory._boundary import translate_errors
from agentmem.memory.errors import InvalidIdError

KEY_PREFIX = "am"
_KEY_ID_BYTES = 6
_KEY = re.compile(r"^am_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_NO_SUCH_KEY = "000000000000"  # a key id never issued: what a malformed key is looked up as
_DUMMY_SALT = b"\0" * 16
_DUMMY_HASH = b"\0" * 32


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from: a tenant, through one of its keys."""

    tenant: str
    key_id: str


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made: ``key`` is shown once and stored nowhere."""

    tenant: str
    key_id: str
    key: str

    def __repr__(self) -> str:  # never the secret
        return f"NewKey(tenant={self.tenant!r}, key_id={self.key_id!r})"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A key as ``agentmem tenants list`` shows it: never its secret or hash."""

    tenant: str
    key_id: str
    created_at: datetime
    revoked_at: datetime | None


def validate_tenant(name: str) -> str:
    """``name`` if it is a valid tenant name (letters, digits, ``.``, ``_``, ``-``; 1 to 64
    characters, starting with a letter or digit), else :class:`InvalidIdError`."""
    if not _TENANT.match(name):
        msg = (
            f"tenant name {name[:40]!r} is not valid: use 1 to 64 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
        raise InvalidIdError(msg)
    return name


def _digest(salt: bytes, secret: str) -> bytes:
    return hmac.new(salt, secret.encode(), hashlib.sha256).digest()


@translate_errors
class TenantKeys:
    """The tenants' keys, on a PostgreSQL pool the caller owns."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def add(self, tenant: str) -> NewKey:
        """Make a key for ``tenant`` (the tenant exists once it has a key)."""
        validate_tenant(tenant)
        key_id = secrets.token_hex(_KEY_ID_BYTES)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        await self.pool.execute(
            "INSERT INTO tenant_keys (key_id, tenant, salt, key_hash) VALUES ($1, $2, $3, $4)",
            key_id,
            tenant,
            salt,
            _digest(salt, secret),
        )
        return NewKey(tenant, key_id, f"{KEY_PREFIX}_{key_id}_{secret}")

    async def list(self, tenant: str | None = None) -> list[KeyInfo]:
        """Every key (of ``tenant``), oldest first."""
        rows = await self.pool.fetch(
            "SELECT tenant, key_id, created_at, revoked_at FROM tenant_keys"
            " WHERE $1::text IS NULL OR tenant = $1 ORDER BY created_at, key_id",
            tenant,
        )
        return [KeyInfo(r["tenant"], r["key_id"], r["created_at"], r["revoked_at"]) for r in rows]

    async def revoke(self, key_id: str) -> str | None:
        """Revoke a key at once; returns its tenant (None: no such key, or revoked before)."""
        tenant: str | None = await self.pool.fetchval(
            "UPDATE tenant_keys SET revoked_at = now()"
            " WHERE key_id = $1 AND revoked_at IS NULL RETURNING tenant",
            key_id,
        )
        return tenant

    async def any_active(self) -> bool:
        """Whether any key is not revoked (then ``agentmem serve`` requires keys)."""
        found: bool = await self.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM tenant_keys WHERE revoked_at IS NULL)"
        )
        return found

    async def verify(self, presented: str) -> Principal | None:
        """The tenant and key id of a valid, unrevoked key; None for anything else, after the
        same work (see the module's notes)."""
        match = _KEY.match(presented)
        key_id, secret = match.groups() if match else (_NO_SUCH_KEY, presented)
        row = await self.pool.fetchrow(
            "SELECT tenant, salt, key_hash, revoked_at IS NULL AS active"
            " FROM tenant_keys WHERE key_id = $1",
            key_id,
        )
        salt, expected = (row["salt"], row["key_hash"]) if row else (_DUMMY_SALT, _DUMMY_HASH)
        same = hmac.compare_digest(_digest(bytes(salt), secret), bytes(expected))
        if row is None or match is None or not same or not row["active"]:
            return None
        return Principal(row["tenant"], key_id)
