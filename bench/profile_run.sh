#!/bin/bash
# How bench/results/flame-*.svg and profile.md were recorded (see profile.md). Usage:
#   RATE=500 bench/profile_run.sh NAME ours|howto CONNECTIONS WRK_THREADS PORT   (writes under $OUT, default /tmp/prof;
#   needs /tmp/prof/body1.json or $OUT/body1.json and py-spy in /tmp/pyspy)
# usage: one.sh NAME ENTRY(ours|howto) CONNS THREADS PORT
OUT=${OUT:-/tmp/prof}; RATE=${RATE:-500}
set -u
NAME=$1; ENTRY=$2; C=$3; T=$4; PORT=$5
cd /work/wt-profile
EXTRA=()
[ "$ENTRY" = howto ] && EXTRA=(--entry_script /work/wt-profile/bench/howto_score.py)
FRONT_DOOR=0 WORKER_COUNT=1 GUNICORN_CMD_ARGS="--threads 16" METRICS_PORT=0 timeout 260 \
  /work/main/.venv/bin/python server/serve.py --model_dir /work/main/models/tf-dnn-mnist/1 --port $PORT "${EXTRA[@]}" \
  > $OUT/$NAME.server.log 2>&1 &
SRV=$!
echo "server pid $SRV"
for i in $(seq 60); do
  curl -s -o /dev/null -m 2 -X POST -H 'Content-Type: application/json' --data-binary @$OUT/body1.json http://127.0.0.1:$PORT/score -w '%{http_code}' 2>/dev/null | grep -q 200 && break
  sleep 1
done
curl -s -m 5 -X POST -H 'Content-Type: application/json' --data-binary @$OUT/body1.json http://127.0.0.1:$PORT/score; echo
# master: the process exec'd from serve.py (pid SRV's child of timeout); worker: its child
MASTER=$(pgrep -P $SRV | head -1)
WORKER=$(pgrep -P $MASTER | head -1)
echo "master $MASTER worker $WORKER"; ps -o pid,ppid,cmd -p $MASTER,$WORKER
# warm-up
BODY_FILE=$OUT/body1.json timeout 10 wrk -t$T -c$C -d3s -s bench/post.lua http://127.0.0.1:$PORT/score >/dev/null
BODY_FILE=$OUT/body1.json timeout 30 wrk -t$T -c$C -d15s --latency --timeout 30s -s bench/post.lua http://127.0.0.1:$PORT/score > $OUT/$NAME.wrk-clean.txt
BODY_FILE=$OUT/body1.json timeout 100 wrk -t$T -c$C -d85s --latency --timeout 30s -s bench/post.lua http://127.0.0.1:$PORT/score > $OUT/$NAME.wrk.txt &
WRK=$!
sleep 2
timeout 45 /tmp/pyspy/bin/py-spy record --pid $WORKER --rate $RATE --duration 25 --threads --format flamegraph -o $OUT/$NAME.svg --nonblocking > $OUT/$NAME.pyspy.log 2>&1
timeout 45 /tmp/pyspy/bin/py-spy record --pid $WORKER --rate $RATE --duration 25 --threads --format raw -o $OUT/$NAME.raw --nonblocking > $OUT/$NAME.pyspy-raw.log 2>&1
timeout 45 /tmp/pyspy/bin/py-spy record --pid $WORKER --rate $RATE --duration 25 --threads --gil --format raw -o $OUT/$NAME.gil.raw --nonblocking > $OUT/$NAME.pyspy-gil.log 2>&1
wait $WRK
cat $OUT/$NAME.wrk-clean.txt $OUT/$NAME.wrk.txt
kill $SRV 2>/dev/null; sleep 1; kill -0 $SRV 2>/dev/null && kill -9 $SRV
# kill leftovers by pid
for p in $WORKER $MASTER; do kill $p 2>/dev/null; done
sleep 2; ps -o pid,cmd -p $WORKER,$MASTER | tail -n +2
