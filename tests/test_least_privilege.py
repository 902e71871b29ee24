"""Least privilege: the agents and the service run on a Redis ACL user limited to the project's
keys, without FLUSHALL, CONFIG or KEYS, and a PostgreSQL role without DDL (docs/service.md)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
import pytest
import redis.asyncio as redis
from redis.exceptions import NoPermissionError

from agentmem.devservers import ServerUrls
from agentmem.memory.migrate import migrate
from tests.orchestrator.runs import cli_env, finish, outcome, start_cli
from tests.service.pool import Pool
from tests.service.test_api import _serve, post_json, request
from tests.service.test_pool import cli

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(300),
    # The ACL user is made on one server; a cluster would need it on every node.
    pytest.mark.skipif(
        os.environ.get("AGENTMEM_TEST_REDIS") == "cluster",
        reason="makes its ACL user on one standalone server",
    ),
]

# What docs/service.md tells an operator to create: keys and channels under the project's
# prefix, every command but the ones that reach beyond it or change the server.
REDIS_ACL = (
    "on", "resetkeys", "~agentmem*", "resetchannels", "&agentmem*", "+@all",
    "-flushall", "-flushdb", "-config", "-keys", "-debug", "-shutdown", "-acl", "-module",
    "-monitor", "-save", "-bgsave", "-bgrewriteaof", "-replicaof", "-slaveof", "-swapdb",
    "-migrate", "-failover",
)  # fmt: skip
POSTGRES_GRANTS = """
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role};
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {role};
"""


@dataclass
class Limited:
    redis_url: str
    database_url: str


def with_user(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


@pytest.fixture
async def limited(servers: ServerUrls) -> AsyncIterator[Limited]:
    """A Redis ACL user and a PostgreSQL role as the docs describe, after migrating as the
    owner; both removed at the end."""
    name, password = f"lp_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = redis.Redis.from_url(servers.redis_url)
    await admin.execute_command(  # type: ignore[no-untyped-call]
        "ACL", "SETUSER", name, *REDIS_ACL, f">{password}"
    )
    owner = await asyncpg.create_pool(servers.database_url, min_size=1, max_size=1)
    await migrate(owner)
    await owner.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
    await owner.execute(POSTGRES_GRANTS.format(role=name))
    try:
        yield Limited(
            with_user(servers.redis_url, name, password),
            with_user(servers.database_url, name, password),
        )
    finally:
        await admin.execute_command(  # type: ignore[no-untyped-call]
            "ACL", "DELUSER", name
        )
        await admin.aclose()
        await owner.execute(f"DROP OWNED BY {name}")
        await owner.execute(f"DROP ROLE {name}")
        await owner.close()


async def test_the_limited_accounts_cannot_flush_configure_scan_or_change_schema(
    limited: Limited,
) -> None:
    """The Redis user gets NOPERM for FLUSHALL, CONFIG, KEYS and keys outside the prefix;
    the PostgreSQL role cannot create a table."""
    client = redis.Redis.from_url(limited.redis_url)
    try:
        for command in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*")):
            with pytest.raises(NoPermissionError):
                await client.execute_command(  # type: ignore[no-untyped-call]
                    *command
                )
        with pytest.raises(NoPermissionError):
            await client.set("someone-else:key", "x")
        await client.set("agentmem-probe:key", "x")
        await client.delete("agentmem-probe:key")
    finally:
        await client.aclose()
    conn = await asyncpg.connect(limited.database_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE agentmem_probe (x int)")
    finally:
        await conn.close()


async def test_the_demo_runs_on_the_limited_accounts(limited: Limited, tmp_path: Path) -> None:
    """`agentmem run` (the demo) completes with every section approved."""
    await anyio.to_thread.run_sync(demo, limited, tmp_path)


def demo(limited: Limited, tmp_path: Path) -> None:
    env = cli_env(limited.redis_url, limited.database_url, tmp_path)
    run_id = f"lp-{uuid.uuid4().hex[:8]}"
    code, stdout, stderr = finish(start_cli(env, "run", "--quiet", "--run-id", run_id))
    assert code == 0, stderr[-3000:]
    assert all(s["state"] == "approved" for s in outcome(stdout).record["sections"])


async def test_the_service_runs_on_the_limited_accounts(limited: Limited, tmp_path: Path) -> None:
    """A pool of workers completes a run submitted through `agentmem serve` with a tenant's
    key, all on the limited accounts."""
    await anyio.to_thread.run_sync(service, limited, tmp_path)


def service(limited: Limited, tmp_path: Path) -> None:
    env = cli_env(limited.redis_url, limited.database_url, tmp_path)
    added = cli(env, "tenants", "add", f"lp-{uuid.uuid4().hex[:6]}")
    assert added.returncode == 0, added.stderr
    key = next(line for line in added.stdout.splitlines() if line.startswith("am_"))
    pool = Pool(env, tmp_path / "logs")
    pool.start_all()
    try:
        with serving(env) as url:
            body = {"topic": "Notes", "sources": [{"name": "a.md", "text": "Alpha is one."}]}
            auth = {"Authorization": f"Bearer {key}"}
            accepted = post_json(f"{url}/api/runs", body, **auth)
            assert accepted.status_code == 202, accepted.text
            run_id = accepted.json()["run_id"]
            waited = cli(env, "wait", run_id, "--timeout", "200", timeout=240)
            assert waited.returncode == 0, waited.stdout + waited.stderr + pool.logs()[-3000:]
            state = request("GET", f"{url}/api/runs/{run_id}", None, **auth)
            assert json.loads(state.text)["state"] == "completed"
    finally:
        pool.stop()
        cli(env, "tenants", "revoke", key.split("_")[1])


@contextmanager
def serving(env: dict[str, str]) -> Iterator[str]:
    """``agentmem serve`` in a process of its own, until the block ends."""
    yield from _serve(env)
