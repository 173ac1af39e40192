# Every target sets up .venv first; a fresh clone needs only `make sweep` or `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
UI_HOST ?= 127.0.0.1
UI_PORT ?= 5000
DASHBOARD_PORT ?= 8080
# The Optuna storage of the default config; set it to a postgresql:// URL for shared studies.
STUDY_STORAGE ?= sqlite:///mlruns/optuna.db

.PHONY: setup lock system-packages sweep smoke evidence curves chorales report reproduce test test-durations test-faults test-fast lint ui dashboard bench clean paper papers

# PyTorch for this machine (requirements-torch.txt; TORCH_INDEX=<url> for another index), then
# the exact versions of requirements.lock (hashes checked), then the project itself.
TORCH_INDEX ?=
setup: $(STAMP)

$(STAMP): requirements-torch.txt requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check \
		$(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) -r requirements-torch.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	# The fused GRU/RNN's C++ step loops, compiled once per machine (optional: without a
	# compiler the Python loops run); a process that finds no build compiles it itself.
	$(PY) -c 'import sys; from rnnsweep.cells import native; sys.exit(native.main())'
	touch $(STAMP)

# Re-resolve requirements.lock from pyproject.toml (main and dev dependencies): exact pins with
# hashes, current pins kept where they still fit; LOCK_ARGS=--upgrade takes the newest allowed.
# torch is left out of the lock (requirements-torch.txt installs the build this machine needs).
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check 'pip-tools>=7.4,<8'
	CUSTOM_COMPILE_COMMAND="make lock" $(PY) -m piptools compile --quiet --generate-hashes \
		--allow-unsafe --extra dev --strip-extras --no-emit-index-url --no-emit-find-links \
		$(LOCK_ARGS) --output-file requirements.lock pyproject.toml
	$(PY) -m rnnsweep.lockfile requirements.lock

# One worker per core (Hydra's joblib launcher, the config's default), each with its share of
# torch threads (rnnsweep/threads.py); WORKERS=1 runs the studies in turn in one process.
WORKERS ?= $(shell nproc 2>/dev/null || echo 1)
SWEEP_LAUNCHER = $(if $(filter 1,$(WORKERS)),hydra/launcher=basic,hydra.launcher.n_jobs=$(WORKERS))

sweep: setup
	$(PY) train.py -m cell=lstm,gru $(SWEEP_LAUNCHER)

smoke: setup
	$(PY) train.py -m cell=lstm,gru experiment=smoke

# All six claims for the article's pair: lstm, gru x small, large x three lengths, sequential
# seeds, two one-thread workers; then the report (reports/adding/). search.repeats=2: two
# independent searches per study (own sampler and training seeds), so the claims' seeds cover
# the tuning's luck and the report shows the tuned optimum's spread (24 studies). Time:
# python -m benchmarks --only evidence (docs/performance.md). EVIDENCE_CELLS=rnn,lstm,gru
# adds the tanh RNN (three pairs, 18 claims, half as many studies again);
# EVIDENCE_REPEATS=1 runs one search per study.
EVIDENCE_CELLS ?= lstm,gru
EVIDENCE_LENGTHS ?= 10,40,120
EVIDENCE_REPEATS ?= 2
evidence: setup
	$(PY) train.py -m experiment=evidence cell=$(EVIDENCE_CELLS) data.seq_len=$(EVIDENCE_LENGTHS) \
		search.repeats=$(EVIDENCE_REPEATS) hydra/launcher=joblib hydra.launcher.n_jobs=2
	$(PY) -m rnnsweep.report

# Learning curves in data size: LSTM and GRU on the noisy adding task at five training-set
# sizes (fractions of the 4,000 large-data sequences), two workers; then the report with a
# power law per cell, the curves' crossing and the overfitting slope (reports/adding/).
CURVE_SIZES ?= 0.05,0.1,0.25,0.5,1
curves: setup
	$(PY) train.py -m experiment=curves cell=lstm,gru data.size=$(CURVE_SIZES) \
		hydra/launcher=joblib hydra.launcher.n_jobs=2
	$(PY) -m rnnsweep.report

# A published result rerun (conf/experiment/<PAPER>.yaml; *_smoke variants too) with one
# one-thread worker per study where the profile has more studies than cores would fit in two
# rounds (the counts: WORKERS in benchmarks/papers.py, which prints train.py's arguments),
# then its report with the "Published vs measured" section: make paper PAPER=weiss2018. The
# chorale profiles (chung2014, greff2017) build the chorale cache first when it is missing.
PAPERS := weiss2018 chung2014 hochreiter1997 greff2017
paper: setup
	@case " $(PAPERS) " in *" $(patsubst %_gpu,%,$(PAPER:_smoke=)) "*) ;; *) echo "usage: make paper PAPER=<one of: $(PAPERS)> (or <name>_smoke; hochreiter1997_gpu on a GPU)" >&2; exit 2;; esac
	@case "$(PAPER)" in chung2014*|greff2017*) test -f data/cache/chorales.npz || $(PY) -m rnnsweep.data.prepare_chorales;; esac
	$(PY) train.py $$($(PY) -m benchmarks.papers --train-args $(PAPER))
	$(PY) -m rnnsweep.report

# All four paper profiles in fresh project copies (hours on a 2-core CPU), their results in
# benchmarks/results/papers.json and the README's "Published vs measured" table rewritten.
papers: setup
	@test -f data/cache/chorales.npz || $(PY) -m rnnsweep.data.prepare_chorales
	$(PY) -m benchmarks --only papers

# Parse the bundled Bach chorales once into data/cache/chorales.npz (data=chorales reads it).
chorales: setup
	$(PY) -m rnnsweep.data.prepare_chorales

# The comparison report of the latest sweep: reports/<task>/ (overrides: REPORT_ARGS=...).
report: setup
	$(PY) -m rnnsweep.report $(REPORT_ARGS)

# A run's `reproduce` command (a trial's, or a study's best trial's) in .venv, activated or
# not: make reproduce RUN=<run id>
reproduce: setup
	@test -n "$(RUN)" || { echo "usage: make reproduce RUN=<MLflow run id>" >&2; exit 2; }
	$(PY) -m rnnsweep.reproduce $(RUN)

# Debian's chromium and postgresql for the browser and distributed tests, when missing.
system-packages:
	./scripts/install-system-packages.sh

# Test files spread over the cores (pytest-xdist; a file's tests stay together, in order),
# longest first by tests/durations.json (tests/file_order.py), not xdist's count of tests.
XDIST_FILES = -n auto --dist loadfile --no-loadscope-reorder
test: setup system-packages
	$(PY) -m ruff check src tests benchmarks train.py
	$(PY) -m pytest $(XDIST_FILES) -m "not faults"

# make test's suite, recording each file's seconds in tests/durations.json (then commit it).
test-durations: setup system-packages
	$(PY) -m pytest $(XDIST_FILES) -m "not faults" --store-durations

# Real PostgreSQL and MLflow servers failing three times in a study (make test: once); CI runs both.
test-faults: setup system-packages
	$(PY) -m pytest -m faults -n auto --dist load tests/test_server_faults.py

# The inner loop: unit and in-process tests only (the goal: a minute). Tests that run train.py,
# a command line or a server in a subprocess are marked e2e by tests/conftest.py.
test-fast: setup
	$(PY) -m pytest -m "not slow and not e2e" -n auto

lint: setup
	$(PY) -m ruff check src tests benchmarks train.py

# Benchmarks print a table and write benchmarks/results/latest.{json,md}; pick parts with
# `make bench BENCH_ARGS="--only overhead,bookkeeping"`.
bench: setup
	$(PY) -m benchmarks $(BENCH_ARGS)

# A taken port fails here in one line (mlflow ui itself would exit 0).
ui: setup
	@$(PY) scripts/port_free.py $(UI_HOST) $(UI_PORT) UI_PORT
	@$(PY) scripts/ui_links.py http://$(UI_HOST):$(UI_PORT) mlruns/mlflow.db
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db \
		--default-artifact-root ./mlruns/artifacts --host $(UI_HOST) --port $(UI_PORT)

dashboard: setup
	@echo "Optuna dashboard: http://$(UI_HOST):$(DASHBOARD_PORT)"
	$(VENV)/bin/optuna-dashboard "$(STUDY_STORAGE)" --host $(UI_HOST) --port $(DASHBOARD_PORT)

clean:
	rm -rf outputs multirun .pytest_cache
