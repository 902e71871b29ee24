"""The checkout's shared local servers: one set for every user, stopped when the last goes."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from agentmem.devservers import EmbeddedRedis, ServerStartError
from agentmem.devservers.shared import process_start, read_state, shared_servers, users

pytestmark = pytest.mark.timeout(180)


def wait_for(condition: object, within: float = 60) -> None:
    """Until ``condition()`` is true (polled), or fail."""
    assert callable(condition)
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {within} s")
        time.sleep(0.05)


def test_users_share_one_set_of_servers_that_stops_when_the_last_leaves(tmp_path: Path) -> None:
    """The second user gets the first's URLs; after both leave, keeper and servers are gone."""
    with shared_servers(tmp_path / "servers") as first:
        with shared_servers(tmp_path / "servers") as second:
            assert first.started
            assert not second.started
            assert second.urls == first.urls
            assert redis.Redis.from_url(second.urls.redis_url).ping()
        assert read_state((tmp_path / "servers").resolve()) is not None  # the first still in
    pids = [first.state.keeper_pid, *first.state.server_pids]
    wait_for(lambda: all(process_start(pid) is None for pid in pids))
    assert read_state((tmp_path / "servers").resolve()) is None


def test_a_user_killed_with_sigkill_does_not_keep_the_servers_up(tmp_path: Path) -> None:
    """The lease of a process that died without leaving is seen as gone; the servers stop."""
    directory = tmp_path / "servers"
    code = (
        "import sys, time; from pathlib import Path; from devservers.shared import shared_servers\n"
        f"with shared_servers(Path({str(directory)!r})):\n"
        "    print('in', flush=True); time.sleep(600)\n"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as user:
        try:
            assert user.stdout is not None
            assert user.stdout.readline().strip() == "in"
            state = read_state(directory.resolve())
            assert state is not None
            assert users(directory.resolve()) == [str(user.pid)]
        finally:
            user.send_signal(signal.SIGKILL)
    wait_for(lambda: process_start(state.keeper_pid) is None)
    assert all(process_start(pid) is None for pid in state.server_pids)


def test_a_server_that_cannot_start_says_why_in_one_line(tmp_path: Path) -> None:
    """Redis on a taken port: one line naming the cause and the log, not the log itself."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = EmbeddedRedis(tmp_path / "redis", port=taken.getsockname()[1])
        with pytest.raises(ServerStartError) as raised:
            server.start()
    message = str(raised.value)
    assert "\n" not in message
    assert f"Failed listening on port {server.port}" in message
    assert str(server.log_path) in message
