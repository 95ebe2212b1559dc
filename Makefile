# facelib: the two commands a new user needs are `make repro` and `make test`.
# Both create or refresh .venv when pyproject.toml changed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONHASHSEED := 0
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup repro test lab bench clean

setup: $(STAMP)

# torch is installed first on its own so that the pinned CPU wheel is picked up before
# anything else can ask for a (CUDA) torch; the pin lives in pyproject.toml with the rest.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$$(grep -o '"torch==[^"]*"' pyproject.toml | tr -d '"')"
	$(PY) -m pip install -q -e .
	$(PY) -m dvc config --local core.analytics false 2>/dev/null || true
	touch $(STAMP)

repro: $(STAMP)
	dvc repro

test: $(STAMP)
	$(PY) -m pytest -q

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	$(PY) benchmarks/lightgcn_vs_pyg.py

clean:
	rm -rf build .pytest_cache
