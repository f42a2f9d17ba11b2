# Two commands on a fresh machine (see README):  `make demo`  and  `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned first so pip takes the local CPU build instead of a multi-GB CUDA one.
TORCH ?= torch==2.13.0

$(BIN)/edgedistill: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/edgedistill

demo: install
	$(BIN)/edgedistill demo

test: install
	$(BIN)/python -m pytest -q -m "not slow and not gpu"

bench: install
	$(BIN)/python benchmarks/distill_throughput.py
	$(BIN)/python benchmarks/latency.py
	$(BIN)/python benchmarks/arabic_kws_sv.py

.PHONY: install demo test bench
