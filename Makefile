# lt-bench: `make demo` and `make test` do all set-up on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install.stamp
export WANDB_SILENT := true

.PHONY: install demo test lint reports smoke clean

install: $(STAMP)  ## create .venv and install torch (pinned first), then lt-bench with dev tools

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: install  ## the quickstart suite on the embedded synthetic dataset (CPU, no download), then its table
	$(BIN)/lt-bench run suite quickstart
	$(BIN)/lt-bench report quickstart

test: install  ## the test suite (CPU only, no download; one thread per process: tiny models run faster)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q tests

lint: install
	$(BIN)/ruff check benchmark tests

reports: install  ## regenerate every suite's report from results/
	for s in $$($(BIN)/lt-bench suites list --json | $(BIN)/python -c "import json,sys; print(' '.join(r['suite'] for r in json.load(sys.stdin)))"); do \
		$(BIN)/lt-bench report $$s > /dev/null || exit 1; done

smoke: install  ## every suite with --smoke (needs the datasets it names)
	$(BIN)/lt-bench run suite quickstart --smoke --tracker none

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache wandb *.egg-info
