"""Tenants' keys in PostgreSQL: stored as salted hashes, checked alike whatever is wrong."""

from __future__ import annotations

import asyncpg
import pytest

from agentmem.memory.migrate import migrate
from agentmem.memory.tenants import Principal, TenantKeys

pytestmark = pytest.mark.anyio


async def test_a_key_is_stored_only_as_a_salted_hash(pg_pool: asyncpg.Pool) -> None:
    """The table holds neither the key nor its secret; two keys never share a salt."""
    await migrate(pg_pool)
    keys = TenantKeys(pg_pool)
    one, two = await keys.add("hash-check"), await keys.add("hash-check")
    try:
        rows = await pg_pool.fetch(
            "SELECT * FROM tenant_keys WHERE key_id = ANY($1)", [one.key_id, two.key_id]
        )
        dumped = repr([dict(r) for r in rows]).encode()
        for made in (one, two):
            secret = made.key.split("_", 2)[2]
            assert secret.encode() not in dumped
            assert secret not in repr(made)
        assert rows[0]["salt"] != rows[1]["salt"]
        assert await keys.verify(one.key) == Principal("hash-check", one.key_id)
    finally:
        await keys.revoke(one.key_id)
        await keys.revoke(two.key_id)


async def test_a_wrong_unknown_malformed_or_revoked_key_is_refused(pg_pool: asyncpg.Pool) -> None:
    """Each way a key can be wrong gives None, and a revoked key stops working at once."""
    await migrate(pg_pool)
    keys = TenantKeys(pg_pool)
    made = await keys.add("refusals")
    _, key_id, secret = made.key.split("_", 2)
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    for wrong in (
        f"am_{key_id}_{flipped}",  # the right id, a wrong secret
        f"am_ffffffffffff_{secret}",  # an unknown id
        "not a key",
        "",
    ):
        assert await keys.verify(wrong) is None
    assert await keys.verify(made.key) is not None
    assert await keys.revoke(made.key_id) == "refusals"
    assert await keys.verify(made.key) is None
    assert await keys.revoke(made.key_id) is None  # revoked already
