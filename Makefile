# Allied: the two quick-start commands are `make demo` and `make test`; `make check` is the gate.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-postgres check lint typecheck format bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/allied demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# the store, integrity, import, TAXII, federation and console tests on PostgreSQL as well: a
# throwaway server on 127.0.0.1 (initdb into a temporary folder), stopped afterwards
test-postgres: $(STAMP)
	url=$$(bash .ci/postgres start) && \
	  ALLIED_TEST_DATABASE_URL=$$url $(BIN)/python -m pytest -q -k postgresql tests/store \
	    tests/integrity tests/ingest tests/taxii tests/federation tests/web; status=$$?; \
	  bash .ci/postgres stop; exit $$status

lint: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/release.py
	$(BIN)/python benchmarks/integrity.py
	$(BIN)/python benchmarks/taxii.py
	$(BIN)/python benchmarks/sync.py
	$(BIN)/python benchmarks/matching.py
	$(BIN)/python benchmarks/blind.py
	$(BIN)/python benchmarks/postgres.py
	$(BIN)/python benchmarks/console.py
	$(BIN)/python benchmarks/importers.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info
