# Two commands on a fresh machine (see README):  `make demo`  and  `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned first so pip takes the local CPU build instead of a multi-GB CUDA one.
TORCH ?= torch==2.13.0
# openWakeWord's feature graphs, for the peer row of the streaming benchmark and its tests only
# (never a runtime dependency): --no-deps, as its own dependencies include tflite-runtime.
PEER ?= openwakeword==0.5.1

$(BIN)/edgedistill: pyproject.toml setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps "$(PEER)"
	touch $@

install: $(BIN)/edgedistill

demo: install
	$(BIN)/edgedistill demo

test: install
	$(BIN)/python -m pytest -q -m "not slow and not gpu"

# The end-to-end runs (whole recipes, the README's commands, benchmark smokes): CI runs them too.
test-slow: install
	$(BIN)/python -m pytest -q -m "slow and not gpu"

# What a user gets from `pip install` (not -e): the wheel in a clean venv, a tiny export and
# the device kit run from outside the checkout.
WHEEL_TMP ?= /tmp/edgedistill-wheel-check
wheel-check: install
	rm -rf $(WHEEL_TMP) && mkdir -p $(WHEEL_TMP)
	$(BIN)/pip wheel -q --no-deps --no-build-isolation -w $(WHEEL_TMP)/dist .
	$(PY) -m venv $(WHEEL_TMP)/venv
	$(WHEEL_TMP)/venv/bin/pip install -q --upgrade pip
	$(WHEEL_TMP)/venv/bin/pip install -q "$(TORCH)"
	$(WHEEL_TMP)/venv/bin/pip install -q $(WHEEL_TMP)/dist/edgedistill-*.whl
	cd $(WHEEL_TMP) && HF_HUB_OFFLINE=1 $(WHEEL_TMP)/venv/bin/python $(CURDIR)/.ci/wheel_check.py
	rm -rf $(WHEEL_TMP)

# The documentation site, strict (a broken link or reference fails), then checked as a reader
# meets it: every page opens from the index, the API page lists the public API with its docstrings.
docs: install
	$(BIN)/pip install -q -e ".[docs]"
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	$(BIN)/python docs/check_site.py site

bench: install
	$(BIN)/python benchmarks/distill_throughput.py
	$(BIN)/python benchmarks/latency.py
	$(BIN)/python benchmarks/arabic_recipe.py

.PHONY: install demo test bench wheel-check docs
