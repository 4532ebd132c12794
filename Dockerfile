# The scoring server as an image: azmlinfsrv serving server/score.py with GPU TensorFlow.
#
#   docker build -t tfscoring .                                              # model mounted at run time
#   docker build -t tfscoring --build-arg MODEL_SOURCE=models/tf-dnn-mnist/1 .  # model baked in
#   docker run --gpus all -p 5001:5001 -v "$PWD/models/tf-dnn-mnist/1:/var/azureml-app/azureml-models/tf-dnn-mnist/1:ro" tfscoring
#
# Default base: Azure ML's minimal GPU inference image, the one its docs list for GPU
# inference, which Azure ML itself uses on AKS GPU nodes. It brings the NVIDIA container
# runtime settings and runs as a non-root user. Its own Python (3.9, in conda) is too old
# for TensorFlow 2.21, so the image gets a Python of the OS (Ubuntu 22.04: 3.10) in a venv of
# its own. tensorflow[and-cuda] brings CUDA 12 and cuDNN as pip packages, so the base's CUDA
# version does not matter; the host needs only the NVIDIA driver.
# What this file expects of a base: apt-get, a Python 3.10-3.13 among its packages, useradd.
ARG BASE_IMAGE=mcr.microsoft.com/azureml/minimal-ubuntu22.04-py39-cuda11.8-gpu-inference:latest
FROM ${BASE_IMAGE}

# gpu: tensorflow[and-cuda]; cpu: tensorflow-cpu of the same version (the container test's stand-in base).
ARG TF_FLAVOR=gpu
# A model directory of the build context to bake in; the default is an empty placeholder, to mount over.
ARG MODEL_SOURCE=docker/no-model

USER 0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The OS packages come from whatever release the base is on (Ubuntu 22.04, or Debian 12 in the
# container test), so their versions cannot be pinned here; everything Python is pinned below.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv nginx \
    && rm -rf /var/lib/apt/lists/* \
    && chown -R 10001 /var/log/nginx /var/lib/nginx \
    && python3 -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 13))' \
    && (id -u tfscoring >/dev/null 2>&1 || useradd --uid 10001 --create-home --shell /usr/sbin/nologin tfscoring)

WORKDIR /opt/tfscoring
COPY requirements/server.txt requirements/constraints.txt requirements/tensorflow-${TF_FLAVOR}.txt requirements/
RUN python3 -m venv venv \
    && venv/bin/pip install --no-cache-dir --disable-pip-version-check -c requirements/constraints.txt \
       -r requirements/server.txt -r requirements/tensorflow-${TF_FLAVOR}.txt
COPY server/ server/

ENV AZUREML_MODEL_DIR=/var/azureml-app/azureml-models/tf-dnn-mnist/1 \
    PATH=/opt/tfscoring/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MALLOC_MMAP_THRESHOLD_=1048576 \
    GUNICORN_CMD_ARGS="--threads 16"
COPY ${MODEL_SOURCE} ${AZUREML_MODEL_DIR}/

# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001
# 5001: the front door (nginx: POST /score, GET /health/{startup,ready,live}); 8002: Prometheus metrics.
EXPOSE 5001 8002
# Liveness: Docker marks the container unhealthy only when it is beyond saving, not when it is busy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5001/health/live', timeout=4)"]
# serve.py runs nginx in front of azmlinfsrv (one process tree) and sizes WORKER_COUNT unless it is set.
CMD ["python", "server/serve.py", "--port", "5001"]
