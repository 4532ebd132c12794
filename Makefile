# The two commands of the README: `make serve` and `make test`.  Both install
# what they need on a fresh Debian/Ubuntu machine: Debian packages, a .venv with
# pinned Python packages, and the model (trained here if missing).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5001
# The model directory as Azure ML mounts a registered model: <name>/<version>/model/...
HOWTO_MODEL_DIR := models/tf-dnn-mnist/1
MODEL_DIR ?= $(HOWTO_MODEL_DIR)
# make serve trains the how-to's model only into its own folder; any other MODEL_DIR is served as it is and never
# written to (a checkpoint, SavedModel or frozen graph is found in it, or a versioned folder's highest: docs/models.md).
SERVE_MODEL := $(if $(filter $(abspath $(HOWTO_MODEL_DIR)),$(abspath $(MODEL_DIR))),model,model-dir-exists)
DATA_DIR ?= /usr/share/datasets/fashion-mnist
# GPU TensorFlow where an NVIDIA driver is present, CPU TensorFlow of the same version elsewhere.
TF_FLAVOR ?= $(if $(shell command -v nvidia-smi 2>/dev/null),gpu,cpu)
# nginx: the front door serve.py puts in front of azmlinfsrv (server/tfscoring/process/nginx.conf.in).
SYSTEM_PACKAGES := python3-venv dataset-fashion-mnist curl nginx
BENCH_PACKAGES := wrk
CONTAINER_PACKAGES := buildah debootstrap
IMAGE ?= tfscoring:latest
MLSERVER_VENV := .venv-mlserver
DEPLOY_VENV := .venv-deploy
# Triton's perf_analyzer (tests/system/test_perf_analyzer.py): its own venv, and the one library its binary needs
# from Debian.
PERF_VENV := .venv-perf
PERF_PACKAGES := libb64-0d
# apt-get needs root: as root run it directly, else through sudo (env: sudo resets the environment).
SUDO := $(if $(filter 0,$(shell id -u)),env,sudo env)
PIP_INSTALL := $(BIN)/pip install --quiet --disable-pip-version-check -c requirements/constraints.txt

.PHONY: model-dir-exists help serve export test unit test-contended bench gpu-check soak image container-test deploy-test lint model system-packages bench-packages perf-packages container-packages clean

help:
	@echo "make serve   install everything, build the model if missing, serve on http://127.0.0.1:$(PORT)/score"
	@echo "make export EXPORT_DIR=<dir>   the served model (MODEL_DIR) as a SavedModel, its answers compared (docs/export.md)"
	@echo "make test    install everything, build the model if missing, run lint and every test"
	@echo "make unit    the unit tests alone (tests/unit: no server, no network, no trained model), in about a minute"
	@echo "make test-contended   the slowest test files with a busy loop on every core beside them"
	@echo "make bench   throughput and latency against the how-to, the server's ceiling and MLServer (bench/results)"
	@echo "make gpu-check   on an NVIDIA GPU: placement, accuracy, workers sharing it, out-of-memory, a short benchmark"
	@echo "make soak    5 minutes at 64 connections on the server as make serve runs it: zero errors, bounded memory"
	@echo "make image   build the image (docker when an engine runs, buildah otherwise)"
	@echo "make container-test   build the Dockerfile on a Debian stand-in base, serve and score through it"

# Install the Debian packages in $(1) that are missing.
define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  command -v apt-get >/dev/null || { echo "install these packages first: $$missing" >&2; exit 1; }; \
	  [ "$$(id -u)" = 0 ] || command -v sudo >/dev/null || \
	    { echo "as root, run: apt-get install $$missing" >&2; exit 1; }; \
	  echo "installing Debian packages: $$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

system-packages:
	$(call apt_install,$(SYSTEM_PACKAGES))

bench-packages:
	$(call apt_install,$(BENCH_PACKAGES))

perf-packages:
	$(call apt_install,$(PERF_PACKAGES))

container-packages:
	$(call apt_install,$(CONTAINER_PACKAGES))

$(BIN)/python: | system-packages
	@$(PYTHON) -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 13))' || \
	  { echo "TensorFlow 2.21 needs Python 3.10 to 3.13; set PYTHON=python3.x" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# The pinned requirements, then this project (pyproject.toml) in editable mode and without dependencies: tfscoring
# (server/tfscoring) imports from anywhere, as the checkout's own files.  model/, client/, bench/ and tools/ are not
# installed: they run from the repository root (python -m model.build, as every target here runs them).
$(VENV)/.server-installed: $(BIN)/python requirements/server.txt requirements/tensorflow-$(TF_FLAVOR).txt requirements/constraints.txt pyproject.toml
	$(PIP_INSTALL) -r requirements/server.txt -r requirements/tensorflow-$(TF_FLAVOR).txt
	$(PIP_INSTALL) --no-deps --no-build-isolation -e .  # setuptools from server.txt: no download
	@touch $@

$(VENV)/.dev-installed: $(VENV)/.server-installed requirements/dev.txt requirements/onnx.txt
	$(PIP_INSTALL) -r requirements/dev.txt -r requirements/onnx.txt  # the export's ONNX check is tested too
	@touch $@

$(MODEL_DIR)/model/mnist-tf.model.index: | $(VENV)/.server-installed system-packages
	$(BIN)/python -m model.build --out $(MODEL_DIR) --data-dir $(DATA_DIR)

model: $(MODEL_DIR)/model/mnist-tf.model.index

model-dir-exists:
	@test -d "$(MODEL_DIR)" || { echo "MODEL_DIR=$(MODEL_DIR) is not a directory: a registered model's folder (<name>/<version>/) is expected" >&2; exit 1; }

$(VENV)/.bench-installed: $(VENV)/.server-installed requirements/bench.txt
	$(PIP_INSTALL) -r requirements/bench.txt
	@touch $@

$(MLSERVER_VENV)/.installed: requirements/mlserver.txt requirements/mlserver-constraints.txt requirements/tensorflow-$(TF_FLAVOR).txt | system-packages
	$(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/pip install --quiet --disable-pip-version-check -c requirements/mlserver-constraints.txt \
	  -r requirements/mlserver.txt -r requirements/tensorflow-$(TF_FLAVOR).txt
	@touch $@

# PyPI's perf-analyzer is a placeholder with no program; tritonclient 2.41.0's wheel is the last to carry the
# perf_analyzer binary (requirements/perf-analyzer.txt says why each pin).
$(PERF_VENV)/.installed: requirements/perf-analyzer.txt | system-packages perf-packages
	$(PYTHON) -m venv $(PERF_VENV)
	$(PERF_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements/perf-analyzer.txt
	@touch $@

$(DEPLOY_VENV)/.installed: requirements/deploy.txt requirements/deploy-constraints.txt | system-packages
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install --quiet --disable-pip-version-check -c requirements/deploy-constraints.txt \
	  -r requirements/deploy.txt
	@touch $@

# serve.py sizes WORKER_COUNT and the gunicorn threads to the machine unless they are set.
serve: $(VENV)/.server-installed $(SERVE_MODEL)
	$(BIN)/python server/serve.py --model_dir $(MODEL_DIR) --port $(PORT)

# The model make serve serves (MODEL_DIR, with the same settings from the environment) as a SavedModel in EXPORT_DIR,
# then its answers compared with the served model's (docs/export.md); EXPORT_ARGS=--onnx <file> and the like.
export: $(VENV)/.server-installed $(SERVE_MODEL)
	@test -n "$(EXPORT_DIR)" || { echo "set EXPORT_DIR=<new folder for the SavedModel>, e.g. exports/<name>/<version>" >&2; exit 1; }
	$(BIN)/python -m tools.export_savedmodel --model-dir $(MODEL_DIR) --out $(EXPORT_DIR) --data-dir $(DATA_DIR) $(EXPORT_ARGS)

# On a GPU machine (TF_FLAVOR=gpu), the GPU mode: bench/gpu_check.py's benchmark, several workers against one,
# GPU utilisation through NVML, under 5 minutes (bench/results/gpu-bench-<gpu name>.md).  BENCH_MODE=compare forces
# the comparison with the how-to, the ceilings and MLServer there too.
BENCH_MODE ?= $(if $(filter gpu,$(TF_FLAVOR)),gpu,compare)
ifeq ($(filter $(BENCH_MODE),gpu compare),)
$(error BENCH_MODE=$(BENCH_MODE): use gpu or compare)
endif
bench: $(VENV)/.bench-installed model $(if $(filter gpu,$(BENCH_MODE)),$(VENV)/.gpu-check-installed,$(MLSERVER_VENV)/.installed bench-packages)
ifeq ($(BENCH_MODE),gpu)
	$(BIN)/python bench/gpu_check.py --only placement,bench --report gpu-bench --model-dir $(MODEL_DIR) --data-dir $(DATA_DIR)
else
	$(BIN)/python -m bench.run --mlserver $(MLSERVER_VENV)/bin/mlserver --model-dir $(MODEL_DIR) --data-dir $(DATA_DIR)
endif

# The server on a real NVIDIA GPU, checked end to end in under 5 minutes (bench/gpu_check.py, which also runs
# as a plain program in a Python that already has GPU TensorFlow).  Writes bench/results/gpu-<gpu name>.md.
# GPU TensorFlow is installed where nvidia-smi runs (TF_FLAVOR); without a GPU each check fails, saying why.
gpu-check: $(VENV)/.gpu-check-installed model
	$(BIN)/python bench/gpu_check.py --model-dir $(MODEL_DIR) --data-dir $(DATA_DIR)

$(VENV)/.gpu-check-installed: $(VENV)/.server-installed requirements/gpu-check.txt
	$(PIP_INSTALL) -r requirements/gpu-check.txt
	@touch $@

# wrk on the server started as make serve starts it; fails on any error or a worker's memory growing > 10 %.
# Writes bench/results/soak.json.  SOAK_URL=http://127.0.0.1:5001/score soaks a running server instead.
SOAK_DURATION ?= 300
SOAK_CONCURRENCY ?= 64
soak: $(VENV)/.server-installed model bench-packages
	$(BIN)/python -m bench.soak --duration $(SOAK_DURATION) --concurrency $(SOAK_CONCURRENCY) \
	  --model-dir $(MODEL_DIR) --data-dir $(DATA_DIR) $(if $(SOAK_URL),--url $(SOAK_URL))

# The image with the default (Azure ML GPU) base; pass --build-arg options through BUILD_ARGS.
image:
	@if command -v docker >/dev/null && docker info >/dev/null 2>&1; then \
	  docker build $(BUILD_ARGS) -t $(IMAGE) . ; \
	else \
	  $(MAKE) --no-print-directory container-packages && \
	  buildah bud --isolation chroot --format docker $(BUILD_ARGS) -t $(IMAGE) . ; \
	fi

# The same Dockerfile on a stand-in base made here (docker/standin-base.sh), CPU TensorFlow, the model baked in.
container-test: $(VENV)/.dev-installed model container-packages
	MODEL_DIR=$(MODEL_DIR) DATA_DIR=$(DATA_DIR) $(BIN)/python -m pytest tests/system/container

# The AKS paths (v1 SDK objects, v2 YAML entities, Kubernetes schemas), offline, in their own venv.
deploy-test: $(DEPLOY_VENV)/.installed
	$(DEPLOY_VENV)/bin/python -m pytest -p no:warnings --confcutdir=tests/system/deployment tests/system/deployment  # the SDKs warn about their own deps

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint --failure-threshold error Dockerfile

# The tests by kind: tests/unit (in-process, no server started), tests/http (the real server, over HTTP),
# tests/system (the programs as make runs them, the image, the deployment files).  The unit tests need no trained
# model (none is built for them): where they are about the how-to's graph (GraphModel, the entry script) they build
# it untrained (tests/graphs.py); they read the t10k data (system-packages: dataset-fashion-mnist).
unit: $(VENV)/.dev-installed system-packages
	DATA_DIR=$(DATA_DIR) $(BIN)/python -m pytest tests/unit

# Every test: the unit, HTTP and system tests, the deployment files', then the image's (about 4 minutes more; CI
# runs it too).  wrk (bench-packages) drives the short soak in tests/system/test_soak.py.
test: $(VENV)/.dev-installed model lint bench-packages $(PERF_VENV)/.installed
	MODEL_DIR=$(MODEL_DIR) DATA_DIR=$(DATA_DIR) $(BIN)/python -m pytest tests/unit tests/http tests/system \
	  --ignore=tests/system/container --ignore=tests/system/deployment
	$(MAKE) --no-print-directory deploy-test
	$(MAKE) --no-print-directory container-test

# Tests that wait for what they assert pass on a loaded machine too; one that reads a log line or a metric
# right after an answer races the server, and loses more often here.  The defaults: the files that read logs
# and a server's state after its answers, and the two slowest.  One busy loop per core, killed after; each loop
# also ends by itself once the recipe's shell is gone, so none outlives an interrupted run (make turns $$$$ into
# $$, which even in a subshell is the pid of the shell that runs the recipe).
CONTENDED_TESTS ?= tests/http/test_observability.py tests/http/test_faults.py tests/http/test_api_key.py \
  tests/http/test_front_door_faults.py tests/http/test_startup.py tests/system/test_soak.py
test-contended: $(VENV)/.dev-installed model bench-packages
	@loops=; for _ in $$(seq $$(nproc)); do (while kill -0 $$$$ 2>/dev/null; do :; done) & loops="$$loops $$!"; done; \
	trap 'kill $$loops 2>/dev/null' EXIT; \
	echo "$$(nproc) busy loops:$$loops"; \
	MODEL_DIR=$(MODEL_DIR) DATA_DIR=$(DATA_DIR) $(BIN)/python -m pytest $(CONTENDED_TESTS)

clean:
	rm -rf $(VENV) $(MLSERVER_VENV) $(DEPLOY_VENV) $(PERF_VENV) models .pytest_cache .ruff_cache
