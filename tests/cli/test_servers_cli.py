"""``agentmem servers up|status|down``: the checkout's local servers, by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from tests.orchestrator.runs import default_env, finish, start_cli

pytestmark = pytest.mark.timeout(180)


def test_servers_up_prints_urls_that_commands_and_scripts_share_until_down(
    tmp_path: Path,
) -> None:
    """up prints the URLs; runs uses those servers without starting any; down stops them."""
    env = default_env(tmp_path)

    code, stdout, stderr = finish(start_cli(env, "servers", "up"))
    assert code == 0, stderr
    urls = dict(line.split("=", 1) for line in stdout.splitlines())
    assert set(urls) == {"REDIS_URL", "DATABASE_URL"}
    assert redis.Redis.from_url(urls["REDIS_URL"]).ping()

    code, _, stderr = finish(start_cli(env, "runs"))
    assert code == 0
    assert "starting local" not in stderr

    code, stdout, _ = finish(start_cli(env, "servers", "status", "--json"))
    status = json.loads(stdout)
    assert status["running"]
    assert status["pinned"]
    assert status["redis_url"] == urls["REDIS_URL"]

    code, stdout, _ = finish(start_cli(env, "servers", "down"))
    assert code == 0
    assert "stopped" in stdout
    code, stdout, _ = finish(start_cli(env, "servers", "status", "--json"))
    assert not json.loads(stdout)["running"]
