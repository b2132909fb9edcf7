# segloop: the two commands a fresh clone needs.
#   make demo   run the main job (a short active-learning loop on CamVid, Prefect local server)
#   make test   run the test suite
# Both create .venv and install the project into it on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIPELINE ?= pipelines/camvid-al-demo.yaml
PYTEST_ARGS ?=

export HF_HUB_OFFLINE := 1
export DVC_NO_ANALYTICS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: demo test test-browser lint repro clean-demo venv params

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/segloop run active_learning --pipeline $(PIPELINE)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The dashboards in headless Chromium (apt-get installs chromium + chromium-driver when
# missing, as root); kept out of `make test` by the browser marker.
test-browser: $(STAMP)
	SEGLOOP_BROWSER_REQUIRED=$${SEGLOOP_BROWSER_REQUIRED:-0} $(BIN)/python -m pytest -m browser tests/browser $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src flows tasks tests benchmarks

# dvc repro with the venv on PATH (the stages call `segloop`).
repro: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

clean-demo:
	rm -rf .segloop/demo .segloop/smoke

# params.yaml spells out every default (DVC tracks it); regenerate after changing defaults.
params: $(STAMP)
	{ cat .params-header; $(BIN)/segloop config show --defaults; } > params.yaml.tmp
	mv params.yaml.tmp params.yaml
