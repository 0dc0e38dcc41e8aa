# mmflow developer entry points. `make demo` and `make test` work on a fresh Debian machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Debian packages: Tesseract (second OCR engine), FFmpeg/espeak-ng/sox (audio and its tests),
# PostgreSQL (the production Prefect database; deployments/postgres.sh and its test).
APT_PACKAGES := tesseract-ocr tesseract-ocr-eng ffmpeg espeak-ng sox postgresql redis-server prometheus

.PHONY: demo test lint typecheck unit test-pyannote .venv-pyannote system-deps clean prefect-yaml alert-rules eval-core

$(BIN)/.installed-core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(BIN)/.installed-dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, exactly: anything else would let pip pick a multi-GB CUDA build.
	$(BIN)/pip install --quiet 'torch==2.13.0'
	$(BIN)/pip install --quiet -e '.[dev,audio,eval]'
	touch $@ $(BIN)/.installed-core

# pyannote.audio needs torch 2.9.1 (its torchaudio must match torch; none exists for 2.13), so
# its backend is tested in a venv of its own (pyproject.toml, extra `pyannote`).
PYANNOTE_VENV ?= .venv-pyannote
PYANNOTE_BIN := $(PYANNOTE_VENV)/bin

$(PYANNOTE_BIN)/.installed-pyannote: pyproject.toml
	$(PYTHON) -m venv $(PYANNOTE_VENV)
	$(PYANNOTE_BIN)/pip install --quiet --upgrade pip
	$(PYANNOTE_BIN)/pip install --quiet 'torch==2.9.1' 'torchaudio==2.9.1'
	$(PYANNOTE_BIN)/pip install --quiet -e '.[dev,pyannote]'
	touch $@

.venv-pyannote: $(PYANNOTE_BIN)/.installed-pyannote

## Run the invoice flow on sample invoices mmflow renders itself (text PDF, scan, photo).
demo: $(BIN)/.installed-core
	$(BIN)/mmflow demo --out out/demo

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "missing Debian packages:$$missing (sudo apt-get install$$missing)"; exit 1; fi; \
	fi

lint: $(BIN)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy cannot follow setuptools' package-dir mapping, so it reads the packages through a tree of
# links named as they install (mmflow/flows -> flows, …).
typecheck: $(BIN)/.installed-dev
	rm -rf build/typecheck && mkdir -p build/typecheck/mmflow
	for p in flows tasks blocks deployments cli; do ln -s ../../../$$p build/typecheck/mmflow/$$p; done
	cd build/typecheck && MYPYPATH=. ../../$(BIN)/mypy --config-file ../../pyproject.toml -p mmflow

unit: $(BIN)/.installed-dev system-deps
	HF_HUB_OFFLINE=1 $(BIN)/pytest -n 2 --dist loadfile -q

# The pyannote backend end to end, where skipping is not allowed.
test-pyannote: $(PYANNOTE_BIN)/.installed-pyannote system-deps
	MMFLOW_REQUIRE_PYANNOTE=1 HF_HUB_OFFLINE=1 $(PYANNOTE_BIN)/pytest -q tests/test_diarise_pyannote.py

## Everything CI runs: lint, types, the whole test suite (and the pyannote backend in its venv).
test: lint typecheck unit test-pyannote

## The core evaluation tier, gated against its committed baseline (docs/evaluation.md); CI runs
## it after the tests. EVAL_OUT holds its report.md, trend.png and results.json.
EVAL_OUT ?= out/eval
eval-core: $(BIN)/.installed-dev system-deps
	HF_HUB_OFFLINE=1 $(BIN)/mmflow eval run core --out $(EVAL_OUT)

## deployments/prefect.yaml from the scenario registry (a test checks it is current).
prefect-yaml: $(BIN)/.installed-core
	$(BIN)/python -m mmflow.deployments.prefect_yaml > deployments/prefect.yaml

## deployments/prometheus/mmflow-alerts.yml from tasks/alerts.py (a test checks it is current).
alert-rules: $(BIN)/.installed-core
	$(BIN)/python -m mmflow.deployments.alert_rules > deployments/prometheus/mmflow-alerts.yml

clean:
	rm -rf $(VENV) $(PYANNOTE_VENV) out .mypy_cache .ruff_cache .pytest_cache
