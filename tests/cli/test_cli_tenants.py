"""``agentmem tenants add | list | revoke``, ``agentmem audit`` and ``serve --host``."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest

from agentmem.devservers import ServerUrls
from tests.orchestrator.runs import cli_env, start_cli
from tests.service.test_pool import cli
from tests.web.conftest import free_port

pytestmark = pytest.mark.timeout(180)


def test_a_key_is_shown_once_listed_by_id_revoked_and_audited(
    servers: ServerUrls, tmp_path: Path
) -> None:
    """`tenants add` prints the key once; `list` and `audit` show its id, never the key;
    `revoke` revokes it, and a second revoke fails with one line."""
    env = cli_env(servers.redis_url, servers.database_url, tmp_path)
    added = cli(env, "tenants", "add", "cli-acme")
    assert added.returncode == 0, added.stderr
    key = next(line for line in added.stdout.splitlines() if line.startswith("am_"))
    key_id = key.split("_")[1]
    listed = cli(env, "tenants", "list", "--tenant", "cli-acme")
    assert key_id in listed.stdout
    assert key not in listed.stdout
    revoked = cli(env, "tenants", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    again = cli(env, "tenants", "revoke", key_id)
    assert again.returncode == 1
    assert len(again.stderr.strip().splitlines()) == 1
    audit = cli(env, "audit", "--tenant", "cli-acme")
    assert "key.add" in audit.stdout
    assert "key.revoke" in audit.stdout
    assert key_id in audit.stdout
    assert key.split("_", 2)[2] not in audit.stdout
    assert "bad/name" in cli(env, "tenants", "add", "bad/name").stderr


def test_serve_refuses_a_public_address_without_authentication(
    servers: ServerUrls, tmp_path: Path
) -> None:
    """With no tenant key, `serve --host 0.0.0.0` exits 2 with one line and serves nothing."""
    env = cli_env(servers.redis_url, servers.database_url, tmp_path)
    refused = cli(env, "serve", "--host", "0.0.0.0", "--port", "1")
    assert refused.returncode == 2
    assert "refusing to serve 0.0.0.0 without authentication" in refused.stderr


def test_forgetting_a_run_is_audited(servers: ServerUrls, tmp_path: Path) -> None:
    """`agentmem forget` leaves a record in the audit log: operator, forget, the run id."""
    env = cli_env(servers.redis_url, servers.database_url, tmp_path, COLUMNS="200")
    run_id = f"forget-{uuid.uuid4().hex[:8]}"
    assert cli(env, "forget", run_id, "--yes").returncode == 0
    audit = cli(env, "audit", "--tenant", "-", "--limit", "1000")
    line = next(line for line in audit.stdout.splitlines() if run_id in line)
    assert "operator" in line
    assert "forget" in line


def test_serve_without_keys_says_in_one_line_that_it_is_open_on_loopback(
    servers: ServerUrls, tmp_path: Path
) -> None:
    """With no tenant key, `serve` starts on 127.0.0.1 and its first line says it is open."""
    env = cli_env(servers.redis_url, servers.database_url, tmp_path, COLUMNS="200")
    process = start_cli(env, "serve", "--port", str(free_port()))
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.communicate(timeout=30)  # waits, and closes its pipes
    assert first.startswith("web view on http://127.0.0.1:")
    assert "open to any local user" in first
