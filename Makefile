# qos-scout: the two commands a new user needs (`make demo`, `make test`) and helpers.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-loaded lint typecheck unit venv clean bench

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/qos-scout demo

lint: $(STAMP)
	$(BIN)/ruff check agent collector tests bench dashboards
	$(BIN)/ruff format --check agent collector tests bench dashboards
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest tests

# `make test` while stress-ng keeps both cores busy (started here, stopped whatever the
# result): timing assumptions that only hold on a quiet machine fail here.
test-loaded: lint typecheck
	@command -v stress-ng >/dev/null || { echo "test-loaded needs stress-ng (apt-get install stress-ng)" >&2; exit 1; }
	stress-ng --cpu 2 --quiet & load=$$!; \
	trap 'kill $$load; wait $$load' EXIT; trap 'exit 130' INT TERM HUP; \
	$(BIN)/python -m pytest tests

bench: $(STAMP)
	$(BIN)/python bench/accuracy.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
