# The two commands of the README: `make serve` and `make test`.  Both install
# what they need on a fresh Debian/Ubuntu machine: Debian packages, a .venv with
# pinned Python packages, and the model (trained here if missing).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5001
# The model directory as Azure ML mounts a registered model: <name>/<version>/model/...
MODEL_DIR ?= models/tf-dnn-mnist/1
DATA_DIR ?= /usr/share/datasets/fashion-mnist
# GPU TensorFlow where an NVIDIA driver is present, CPU TensorFlow of the same version elsewhere.
TF_FLAVOR ?= $(if $(shell command -v nvidia-smi 2>/dev/null),gpu,cpu)
SYSTEM_PACKAGES := python3-venv dataset-fashion-mnist curl
# apt-get needs root: as root run it directly, else through sudo (env: sudo resets the environment).
SUDO := $(if $(filter 0,$(shell id -u)),env,sudo env)
PIP_INSTALL := $(BIN)/pip install --quiet --disable-pip-version-check -c requirements/constraints.txt

.PHONY: help serve test lint model system-packages clean

help:
	@echo "make serve   install everything, build the model if missing, serve on http://127.0.0.1:$(PORT)/score"
	@echo "make test    install everything, build the model if missing, run lint and every test"

system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  command -v apt-get >/dev/null || { echo "install these packages first: $$missing" >&2; exit 1; }; \
	  [ "$$(id -u)" = 0 ] || command -v sudo >/dev/null || \
	    { echo "as root, run: apt-get install $$missing" >&2; exit 1; }; \
	  echo "installing Debian packages: $$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(BIN)/python: | system-packages
	@$(PYTHON) -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 13))' || \
	  { echo "TensorFlow 2.21 needs Python 3.10 to 3.13; set PYTHON=python3.x" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(VENV)/.server-installed: $(BIN)/python requirements/server.txt requirements/tensorflow-$(TF_FLAVOR).txt requirements/constraints.txt
	$(PIP_INSTALL) -r requirements/server.txt -r requirements/tensorflow-$(TF_FLAVOR).txt
	@touch $@

$(VENV)/.dev-installed: $(VENV)/.server-installed requirements/dev.txt
	$(PIP_INSTALL) -r requirements/dev.txt
	@touch $@

$(MODEL_DIR)/model/mnist-tf.model.index: | $(VENV)/.server-installed system-packages
	$(BIN)/python -m model.build --out $(MODEL_DIR) --data-dir $(DATA_DIR)

model: $(MODEL_DIR)/model/mnist-tf.model.index

serve: $(VENV)/.server-installed model
	AZUREML_MODEL_DIR=$(MODEL_DIR) $(BIN)/azmlinfsrv --entry_script server/score.py --port $(PORT)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(VENV)/.dev-installed model lint
	MODEL_DIR=$(MODEL_DIR) DATA_DIR=$(DATA_DIR) $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) models .pytest_cache .ruff_cache
