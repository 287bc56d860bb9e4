# liveloop: `make run` runs the whole loop on the embedded simulator, `make test` runs the test suite.
# Both create .venv and install the project on first use. Tool state stays in .liveloop/ (never ~).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 3000
MONITOR_PORT ?= 8000
STATE  := $(CURDIR)/.liveloop

export PREFECT_HOME := $(STATE)/prefect
# a busy machine can take well over the default 20 s to bring up the ephemeral API server of the first flow
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 180
export BENTOML_HOME := $(STATE)/bentoml
export HF_HOME := $(STATE)/hf
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_PROGRESS_BARS := 1
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export BENTOML_DO_NOT_TRACK := true
export GX_ANALYTICS_ENABLED := false
export TOKENIZERS_PARALLELISM := false

.PHONY: install state run test ui serve monitor repro clean-state help

help:
	@echo "make run    - the whole loop on the embedded simulator (simulate -> validate -> version -> drift -> train -> evaluate -> promote -> package)"
	@echo "make test   - the test suite"
	@echo "make ui     - prefect server on 127.0.0.1:4200 with the scheduled deployments"
	@echo "make serve  - bentoml serve the champion on PORT (default 3000); the demo page is /demo/"
	@echo "make monitor - evidently ui on 127.0.0.1:MONITOR_PORT (default 8000): the loop's dashboard over time"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned to the CPU wheel available here, so no resolver picks a CUDA build
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

state:
	@mkdir -p $(PREFECT_HOME) $(BENTOML_HOME) $(HF_HOME)

run: $(STAMP) state
	$(BIN)/python -m flows.replay_timeline

test: $(STAMP) state
	$(BIN)/python -m pytest -m "not gpu" $(PYTEST_ARGS)

ui: $(STAMP) state
	$(BIN)/python -m flows.serve --port 4200

repro: $(STAMP) state
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro

monitor: $(STAMP) state
	@mkdir -p $(STATE)/evidently
	$(BIN)/evidently ui --workspace $(STATE)/evidently --host 127.0.0.1 --port $(MONITOR_PORT)

serve: $(STAMP) state
	$(BIN)/liveloop package
	$(BIN)/bentoml serve liveloop.serving.service:LiveRecommender --host 127.0.0.1 --port $(PORT)

clean-state:
	rm -rf .liveloop
