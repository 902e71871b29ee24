"""A pool on one machine with nothing configured: every service command meets on the
checkout's shared local servers, as ``agentmem run`` does."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.orchestrator.runs import default_env
from tests.service.pool import Pool
from tests.service.test_pool import cli

pytestmark = pytest.mark.timeout(240)


def test_workers_submit_and_wait_share_the_local_servers_when_no_url_is_set(
    tmp_path: Path,
) -> None:
    """Without REDIS_URL/DATABASE_URL, `servers up`, the workers, `submit`, `wait` and `status`
    all use the same local servers: the submitted run completes with a report."""
    env = default_env(tmp_path)
    up = cli(env, "servers", "up")  # kept up across the commands below, as a user would
    assert up.returncode == 0, up.stderr
    pool = Pool(env, tmp_path / "workers")
    try:
        pool.start_all()
        submitted = cli(env, "submit", "--tenant", "solo", "--run-id", "local-pool-run")
        assert submitted.returncode == 0, submitted.stderr
        assert submitted.stdout.strip() == "local-pool-run"

        waited = cli(env, "wait", "local-pool-run", "--timeout", "150", timeout=170)

        assert waited.returncode == 0, waited.stderr + pool.logs()
        assert (tmp_path / "reports" / "local-pool-run.md").is_file()
        shown = cli(env, "status", "--json")
        assert shown.returncode == 0, shown.stderr
        assert '"solo"' in shown.stdout
    finally:
        pool.stop()
        cli(env, "servers", "down", "--force")
