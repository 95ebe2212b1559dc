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

.PHONY: setup repro exp related ablations budget generative repro-profile test browser lab bench bench-eval bench-lightgcn bench-face bench-generative clean

setup: $(STAMP)

# torch is installed first on its own so that the pinned CPU wheel is picked up before
# anything else can ask for a (CUDA) torch; the pin lives in pyproject.toml with the rest.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$$(grep -o '"torch==[^"]*"' pyproject.toml | tr -d '"')"
	$(PY) -m pip install -q -e .
	$(PY) -m dvc config --local core.analytics false 2>/dev/null || true
	touch $(STAMP)

# the study (dvc.yaml), every params.yaml section validated before DVC touches an output;
# `dvc repro -P` would also run the ablations and the budget curve
repro: $(STAMP)
	$(PY) -m facelib.validate
	dvc repro dvc.yaml

# an experiment with changed params, validated first: make exp SET="face.word_num=8"
exp: $(STAMP)
	$(PY) -m facelib.validate $(foreach s,$(SET),--set $(s))
	dvc exp run $(foreach s,$(SET),-S $(s))

# RLMRec-Con/Gen and DaRec trained from scratch beside the study's base and FACE runs
# (related/dvc.yaml, params.yaml study.related), kept out of `make repro`'s time; then the
# report again, so that reports/index.html links their table and the README shows it
related: $(STAMP)
	$(PY) -m facelib.validate
	dvc repro related/dvc.yaml
	dvc repro --force --single-item report

# FACE ablations on one run (ablations/dvc.yaml), kept out of `make repro`'s hour;
# then the report again, so that reports/index.html links the ablations page
ablations: $(STAMP)
	dvc repro ablations/dvc.yaml
	dvc repro --force --single-item report

# FACE's alignment budget curve (budget/dvc.yaml) from the study's map checkpoint of one
# run; then the report again, so that reports/index.html links the curve
budget: $(STAMP)
	dvc repro budget/dvc.yaml
	dvc repro --force --single-item report

# the generative recommenders (generative/dvc.yaml): SASRec and CF backbones, LC-Rec and
# Semantic Convergence on chronological leave-one-out, LC-Rec also on the 3:1:1 split; then
# the report again, so that reports/index.html links their tables
generative: $(STAMP)
	$(PY) -m facelib.validate
	dvc repro generative/dvc.yaml
	dvc repro --force --single-item report

# a compute profile beside the default study (profiles/<name>.yaml, default ml-1m), in its
# own work tree build/profiles/<name> with the committed code; its reports are collected
# into reports/profiles/<name>/
PROFILE ?= ml-1m
repro-profile: $(STAMP)
	@test -d build/profiles/$(PROFILE) || git worktree add --force --detach build/profiles/$(PROFILE) HEAD
	$(PY) -m facelib.profiles apply $(PROFILE)
	cd build/profiles/$(PROFILE) && FACELIB_ROOT=$$PWD $(CURDIR)/$(VENV)/bin/dvc repro dvc.yaml
	$(PY) -m facelib.profiles collect $(PROFILE)

test: $(STAMP) browser
	$(PY) -m pytest -q

# headless Chromium for the report's browser test (Debian packages, installed once)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	    else echo "note: install chromium and chromium-driver for the browser test"; fi; }

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

# our LightGCN vs torch_geometric's (training epoch), then the full-ranking evaluator
bench: bench-lightgcn bench-eval

bench-lightgcn: $(STAMP)
	$(PY) benchmarks/lightgcn_vs_pyg.py

bench-eval: $(STAMP)
	$(PY) benchmarks/eval_speed.py

# FACE step cost: this tree against the FACE code of BASELINE_COMMIT (checked out, once, as a
# detached worktree in the git-ignored build/baseline), timed in the same run
BASELINE_COMMIT := 8e9a1e4
build/baseline:
	git worktree add --force --detach build/baseline $(BASELINE_COMMIT)

bench-face: $(STAMP) | build/baseline
	$(PY) benchmarks/face_step.py --baseline-src build/baseline \
	  --json reports/benchmarks/face_step_cpu.json

# the generative backend's CPU cost: a training epoch with the output layer at the response
# positions only against full logits, timed in the same run, and generation per user
bench-generative: $(STAMP)
	$(PY) benchmarks/generative_step.py

clean:
	rm -rf build .pytest_cache
