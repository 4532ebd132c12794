#!/usr/bin/env bash
# Run the image on this machine's GPUs (Docker with the NVIDIA Container Toolkit, "nvidia-docker").
#
#   docker build -t tfscoring .
#   docker/run-local.sh [image] [model directory]      # then: python -m client.score_client
#
# Any setting of docs/configuration.md can be passed through the environment (the list below; a test keeps it
# complete), e.g. WORKER_COUNT=2 docker/run-local.sh. REQUIRE_GPU defaults to 1 here: a container that
# cannot see the GPU stops with one log line instead of scoring on the CPU.
set -euo pipefail
image=${1:-tfscoring:latest}
model=$(realpath "${2:-models/tf-dnn-mnist/1}")
settings=(REQUIRE_GPU WORKER_COUNT GUNICORN_CMD_ARGS MAX_BATCH_ROWS MAX_BATCH_DELAY_MS MAX_QUEUE_ROWS
  MAX_QUEUE_WAIT_MS MAX_REQUEST_ROWS MAX_REQUEST_BYTES MAX_INFLIGHT_BYTES SESSION_HANG_S SCORING_API_KEY
  METRICS_PORT METRICS_BIND LOG_REQUESTS FRONT_DOOR CLIENT_HEADER_TIMEOUT_S CLIENT_BODY_TIMEOUT_S
  KEEPALIVE_TIMEOUT_S MAX_CONNECTIONS UPSTREAM_TIMEOUT_S WORKER_HANG_S WORKER_BUSY_S MALLOC_ARENA_MAX
  MODEL_POLL_S MODEL_LOAD_TIMEOUT_S WARMUP_MAX_REQUESTS
  MODEL_FORMAT SAVED_MODEL_TAGS SIGNATURE_NAME
  MODEL_FOLDER MODEL_FILE_PREFIX MODEL_NAME MODEL_VERSION INPUT_TENSOR OUTPUT_TENSOR DATA_ANSWER IMAGE_SCALE
  GPU_MEMORY_LIMIT_MB DATA_COLLECTION DATA_COLLECTION_SAMPLE DATA_COLLECTION_MAX_BYTES TF_NUM_INTRAOP_THREADS
  OTEL_SDK_DISABLED OTEL_TRACES_EXPORTER OTEL_SERVICE_NAME OTEL_EXPORTER_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_HEADERS
  OTEL_EXPORTER_OTLP_PROTOCOL OTEL_EXPORTER_OTLP_TIMEOUT OTEL_EXPORTER_OTLP_COMPRESSION OTEL_EXPORTER_OTLP_CERTIFICATE
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT OTEL_EXPORTER_OTLP_TRACES_HEADERS OTEL_EXPORTER_OTLP_TRACES_PROTOCOL
  OTEL_EXPORTER_OTLP_TRACES_TIMEOUT OTEL_EXPORTER_OTLP_TRACES_COMPRESSION OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE
  AML_CORS_ORIGINS)
env_args=()
for name in "${settings[@]}"; do
  # -e NAME: docker reads the value from this environment, so no value (an API key) shows in ps.
  if [ -n "${!name:-}" ]; then export "${name?}"; env_args+=(-e "$name"); fi
done
[ -n "${REQUIRE_GPU:-}" ] || env_args+=(-e REQUIRE_GPU=1)
ports=(-p 5001:5001)
metrics_port=${METRICS_PORT:-8002}  # Prometheus metrics; METRICS_PORT=0 turns them off
[ "$metrics_port" = 0 ] || ports+=(-p "$metrics_port:$metrics_port")
exec docker run --rm --gpus all "${ports[@]}" \
  -v "$model:/var/azureml-app/azureml-models/tf-dnn-mnist/1:ro" \
  "${env_args[@]}" "$image"
