#!/usr/bin/env bash
# How bench/results/flame-*.svg and profile.md were recorded: one worker of 16 threads without the
# front door, wrk on a 1-row JSON body, py-spy on the worker (see profile.md).
#
#   bench/profile_run.sh NAME ours|howto CONNECTIONS WRK_THREADS PORT
#
# Environment: OUT (where to write; default $TMPDIR/tfscoring-profile, which must hold body1.json),
# RATE (py-spy samples per second; 500), PYSPY (the py-spy command; py-spy), PYTHON (.venv/bin/python),
# MODEL_DIR (models/tf-dnn-mnist/1).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-${TMPDIR:-/tmp}/tfscoring-profile}; RATE=${RATE:-500}; PYSPY=${PYSPY:-py-spy}
PYTHON=${PYTHON:-.venv/bin/python}; MODEL_DIR=${MODEL_DIR:-models/tf-dnn-mnist/1}
NAME=$1; ENTRY=$2; C=$3; T=$4; PORT=$5
EXTRA=()
[ "$ENTRY" = howto ] && EXTRA=(--entry_script "$PWD/bench/howto_score.py")
FRONT_DOOR=0 WORKER_COUNT=1 GUNICORN_CMD_ARGS="--threads 16" METRICS_PORT=0 timeout 260 \
  "$PYTHON" server/serve.py --model_dir "$MODEL_DIR" --port "$PORT" "${EXTRA[@]}" > "$OUT/$NAME.server.log" 2>&1 &
SRV=$!
for _ in $(seq 60); do
  curl -s -o /dev/null -m 2 -X POST -H 'Content-Type: application/json' --data-binary "@$OUT/body1.json" \
    "http://127.0.0.1:$PORT/score" -w '%{http_code}' 2>/dev/null | grep -q 200 && break
  sleep 1
done
MASTER=$(pgrep -P "$SRV" | head -1)  # timeout's child: serve.py exec'd azmlinfsrv
WORKER=$(pgrep -P "$MASTER" | head -1)
echo "master $MASTER worker $WORKER"
export BODY_FILE=$OUT/body1.json  # bench/post.lua reads it
load=(-t"$T" -c"$C" --latency --timeout 30s -s bench/post.lua "http://127.0.0.1:$PORT/score")
timeout 10 wrk -d3s "${load[@]}" > /dev/null || true  # warm-up
timeout 30 wrk -d15s "${load[@]}" > "$OUT/$NAME.wrk-clean.txt"  # unprofiled
wrk -d85s "${load[@]}" > "$OUT/$NAME.wrk.txt" &
WRK=$!
sleep 2
for format in flamegraph raw; do
  timeout 45 "$PYSPY" record --pid "$WORKER" --rate "$RATE" --duration 25 --threads --format "$format" \
    -o "$OUT/$NAME.$format" --nonblocking > "$OUT/$NAME.pyspy-$format.log" 2>&1 || true
done
timeout 45 "$PYSPY" record --pid "$WORKER" --rate "$RATE" --duration 25 --threads --gil --format raw \
  -o "$OUT/$NAME.gil.raw" --nonblocking > "$OUT/$NAME.pyspy-gil.log" 2>&1 || true
wait "$WRK" || true
cat "$OUT/$NAME.wrk-clean.txt" "$OUT/$NAME.wrk.txt"
kill "$SRV" 2>/dev/null || true
