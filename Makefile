# qos-scout: the two commands a new user needs (`make demo`, `make test`) and helpers.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-loaded lint typecheck unit venv clean bench fuzz

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	if command -v npm >/dev/null; then npm install --silent --no-audit --no-fund --prefix $(VENV)/node axe-core@4; fi
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
	$(BIN)/python -m pytest -n 2 --dist loadscope tests

# `make test` while stress-ng keeps both cores busy (started here, stopped whatever the
# result): timing assumptions that only hold on a quiet machine fail here.
test-loaded: lint typecheck
	@command -v stress-ng >/dev/null || { echo "test-loaded needs stress-ng (apt-get install stress-ng)" >&2; exit 1; }
	stress-ng --cpu 2 --quiet & load=$$!; \
	trap 'kill $$load; wait $$load' EXIT; trap 'exit 130' INT TERM HUP; \
	$(BIN)/python -m pytest -n 2 --dist loadscope tests

# The fuzzers alone: schemathesis against a running collector on SQLite and PostgreSQL
# (tests/security) with ten times the examples `make test` runs, and the hypothesis fuzzers
# of the parsers of untrusted bytes (SIP, SDP, phones' call reports, TWAMP, bandwidth frames,
# the responder).
fuzz: $(STAMP)
	QS_FUZZ_SCALE=10 $(BIN)/python -m pytest tests/security tests/sip/test_fuzz.py \
		tests/sip/test_message.py tests/sip/test_vqreport.py tests/net/test_responder_fuzz.py \
		tests/net/test_bwframe.py tests/net/test_twamp_packets.py

bench: $(STAMP)
	$(BIN)/python bench/accuracy.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
