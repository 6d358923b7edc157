# adgen: `make demo` runs the example campaign, `make test` runs the test suite.
# Each sets up .venv on its own (CPU torch first, so pip never pulls a multi-GB CUDA build).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.adgen-installed

.PHONY: demo test lint bench mutate install clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=python3" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/adgen run campaigns/northwind-spring.yaml
	@echo "open out/northwind-spring/review.html (assets/, manifest.csv, assignments.csv beside it)"

# Two pytest-xdist workers (the Ray tests share one of them and its cluster); TEST_WORKERS=0
# runs in one process.
TEST_WORKERS ?= 2

test: $(STAMP)
	bash tests/gbstats_env.sh
	@HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check adgen tests bench examples
	$(BIN)/mypy

# Mutation testing of the critical modules ([tool.mutmut] in pyproject.toml), at most
# MUTATE_SECONDS per call: results accumulate in mutants/, so calling it again (no MUTANTS) continues.
# One module: make mutate MUTANTS='adgen.guardrails.*'
MUTATE_SECONDS ?= 1800
MUTANTS ?=
mutate: $(STAMP)
	-env -u PYTHONPATH HF_HUB_OFFLINE=1 timeout $(MUTATE_SECONDS) $(BIN)/mutmut run --max-children 2 $(MUTANTS)
	$(BIN)/mutmut results

bench: $(STAMP)
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf out mutants .pytest_cache .mypy_cache .ruff_cache
