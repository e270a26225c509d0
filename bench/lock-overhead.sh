#!/usr/bin/env bash
# The cost of the Redis-backed lock: the same service, same SQLite defaults,
# once with the in-process lock and once with REDIS_URL, under the same
# `loadtest chain` (rounds interleaved) and `loadtest storm` loads.
#
#   bench/lock-overhead.sh      # needs Redis on 127.0.0.1:6379
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-8s} CLIENTS=${CLIENTS:-50}
REDIS=${REDIS:-redis://127.0.0.1:6379/0}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
go build -o "$work/authsvc" .
THROTTLE=off BCRYPT_QUEUE_TIMEOUT=1m PORT=3301 DATABASE_URL="$work/memory.db" JWT_SECRET=bench-secret-of-at-least-32-bytes-long "$work/authsvc" >"$work/memory.log" 2>&1 & pids+=($!)
THROTTLE=off BCRYPT_QUEUE_TIMEOUT=1m PORT=3302 DATABASE_URL="$work/redis.db" REDIS_URL=$REDIS JWT_SECRET=bench-secret-of-at-least-32-bytes-long "$work/authsvc" >"$work/redis.log" 2>&1 & pids+=($!)
for port in 3301 3302; do
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
done
name() { [ "$1" = 3301 ] && echo "memory lock" || echo "redis lock "; }
for round in $(seq 1 "$ROUNDS"); do
  for port in 3301 3302; do
    "$work/authsvc" loadtest chain --url "http://127.0.0.1:$port" -c "$CLIENTS" --users "$CLIENTS" --duration "$DURATION" --json 2>/dev/null |
      python3 -c 'import json,sys; r=json.load(sys.stdin); l=r["latencyMs"]; print("round %s %s chain: %d refreshes/s, p50 %.2f ms, p99 %.2f ms, failed %d" % (sys.argv[1], sys.argv[2], r["refreshesPerSecond"], l["p50"], l["p99"], r["failed"]))' "$round" "$(name $port)"
  done
done
for port in 3301 3302; do
  "$work/authsvc" loadtest storm --url "http://127.0.0.1:$port" -n 1000 --rounds 3 --json 2>/dev/null |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print("%s storm 3 x 1000: statuses %s, successors per round %s, round ms %s" % (sys.argv[1], r["total"]["statuses"], [x["successors"] for x in r["rounds"]], [round(x["durationMs"], 1) for x in r["rounds"]]))' "$(name $port)"
done
