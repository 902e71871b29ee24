"""``agentmem serve`` and ``agentmem run`` side by side in one checkout, on default settings:
no REDIS_URL, no DATABASE_URL; both use the checkout's shared local servers."""

from __future__ import annotations

import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agentmem.devservers import free_port
from agentmem.devservers.shared import process_start, read_state
from tests.orchestrator.runs import default_env, finish, start_cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def wait_for_page(url: str) -> None:
    """Until ``url`` answers 200."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url} did not answer within 2 minutes")


@contextmanager
def serving(env: dict[str, str]) -> Iterator[str]:
    """``agentmem serve`` on a free port until the block ends (Ctrl-C), then its exit checked."""
    port = free_port()
    serve = start_cli(env, "serve", "--port", str(port))
    try:
        wait_for_page(f"http://127.0.0.1:{port}/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.send_signal(signal.SIGINT)
        code, _, stderr = finish(serve, timeout=60)
    assert "postmaster.pid" not in stderr
    assert code in {0, 130}, stderr[-2000:]


def test_serve_and_run_share_the_servers_and_the_live_page_follows_the_run(
    tmp_path: Path,
) -> None:
    """The run attaches to the servers serve started; the run's live stream carries its events
    to the end; when both have ended the servers stop."""
    env = default_env(tmp_path, AGENTMEM_STUB_DELAY_SECONDS="0.1")
    run_id = f"side-{uuid.uuid4().hex[:8]}"
    directory = (tmp_path / ".agentmem" / "servers").resolve()
    with serving(env) as web:
        state = read_state(directory)
        assert state is not None
        run = start_cli(env, "run", "-q", "--run-id", run_id)
        wait_for_page(f"{web}/runs/{run_id}")
        seen = []
        with urllib.request.urlopen(f"{web}/runs/{run_id}/stream", timeout=240) as stream:
            for raw in stream:
                line = raw.decode().strip()
                if line.startswith("data: "):
                    seen.append(line.removeprefix("data: ").split()[0])
                if line == "event: done":
                    break
        code, stdout, stderr = finish(run)
        assert code == 0, stderr[-2000:]
        assert Path(stdout.strip()).exists()
        assert read_state(directory) == state  # the run started nothing of its own
        with urllib.request.urlopen(f"{web}/runs/{run_id}", timeout=30) as response:
            page = response.read().decode()
        with urllib.request.urlopen(f"{web}/runs/{run_id}/report", timeout=30) as response:
            report = response.read().decode()
    assert "completed" in page
    assert 'class="legend"' in page  # what the timeline's marks mean
    assert 'id="report"' in page  # the report, rendered on the run's page
    assert f'href="/runs/{run_id}/report"' in page
    assert "<h2>Summary</h2>" in report
    assert "[F" in report
    assert "run.completed" in seen
    assert any(kind.startswith("section.") for kind in seen)
    deadline = time.monotonic() + 60
    while process_start(state.keeper_pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_start(state.keeper_pid) is None
    assert read_state(directory) is None
