"""The README's memory-layer example runs as written against the servers the project starts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.orchestrator.runs import default_env, finish, start_cli

README = Path(__file__).resolve().parents[1] / "README.md"

pytestmark = pytest.mark.timeout(180)


def readme_example() -> str:
    text = README.read_text()
    section = text[text.index("## Using the memory layer in your own agents") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


def test_the_readme_example_runs_as_written_on_the_servers_of_servers_up(tmp_path: Path) -> None:
    """`export $(agentmem servers up)`, then the code block as it stands runs to the end."""
    env = default_env(tmp_path)
    code, stdout, stderr = finish(start_cli(env, "servers", "up"))
    assert code == 0, stderr
    exported = dict(line.split("=", 1) for line in stdout.splitlines())
    script = tmp_path / "example.py"
    script.write_text(readme_example() + "\nprint('finished')\n")
    try:
        result = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**env, **exported},
            cwd=tmp_path,
        )
    finally:
        finish(start_cli(env, "servers", "down", "--force"))

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("finished")
