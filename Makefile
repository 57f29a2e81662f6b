# Two commands from a fresh clone: `make run` (restore sample_data/ into out/) and `make test`.
# Both create .venv/ when it is missing; torch is installed first and pinned, because a bare
# `torch` pulls a multi-GB CUDA build. Everything else is pinned by constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench-deps lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[flows,dev,train]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/restore batch sample_data -o out

test: $(STAMP)
	$(BIN)/python -m pytest tests

bench-deps: $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[bench]'

lint: $(STAMP)
	$(BIN)/ruff check restore flows tests bench

clean:
	rm -rf out .pytest_cache
