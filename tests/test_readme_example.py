"""The README's memory-layer example runs as written against the real servers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from devservers import ServerUrls

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_example_runs_against_real_servers(servers: ServerUrls, tmp_path: Path) -> None:
    """Only the URLs change: the code block under "Using the memory layer" runs to the end."""
    text = README.read_text()
    section = text[text.index("## Using the memory layer in your own agents") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    code = match.group(1)
    code = code.replace('"redis://localhost:6379/0"', repr(servers.redis_url))
    code = code.replace('"postgresql://localhost/agents"', repr(servers.database_url))
    script = tmp_path / "example.py"
    script.write_text(code + "\nprint('finished')\n")

    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("finished")
