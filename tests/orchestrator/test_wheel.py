"""The built wheel carries its prompts and demo notes: ``agentmem run`` works from an install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from agentmem.devservers import ServerUrls

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_runs_from_the_installed_wheel_outside_the_checkout(
    servers: ServerUrls, tmp_path: Path
) -> None:
    """Build the wheel, install it into a fresh venv, run the demo from another folder.

    The wheel is installed without its dependencies, which the fresh venv borrows from the
    development venv's site-packages (a path line, so the checkout's editable hook stays off):
    the test needs no network, and only the wheel's own files can provide agentmem.
    """
    dist, env_dir, elsewhere = tmp_path / "dist", tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    source = tmp_path / "source"  # a copy: building in the checkout would leave build/ there
    skip = shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "tests", "reports")
    shutil.copytree(ROOT, source, symlinks=True, ignore=skip)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
        check=True,
        capture_output=True,
        cwd=elsewhere,
    )
    wheel = next(dist.glob("agentmem-*.whl"))
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "borrowed-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel],
        check=True,
        capture_output=True,
        cwd=elsewhere,
    )
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}},
        "REDIS_URL": servers.redis_url,
        "DATABASE_URL": servers.database_url,
        "AGENTMEM_DATA_DIR": str(elsewhere / "data"),
        "AGENTMEM_REPORTS_DIR": str(elsewhere / "reports"),
        "AGENTMEM_LLM": "stub",
    }

    where = subprocess.run(
        [
            python,
            "-c",
            "from agentmem import agents, orchestrator\n"
            "print(agents.__file__, orchestrator.__file__)",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
    ).stdout
    result = subprocess.run(
        [env_dir / "bin" / "agentmem", "run", "-q", "--run-id", f"wheel-{os.getpid()}"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
        timeout=300,
        check=False,
    )

    assert str(ROOT) not in where
    assert result.returncode == 0, result.stderr[-3000:]
    report = Path(result.stdout.strip())
    assert report.parent == elsewhere / "reports"
    assert "## Sources" in report.read_text()
