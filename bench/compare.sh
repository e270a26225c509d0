#!/usr/bin/env bash
# Side-by-side load comparison: this service on SQLite (the default) against
# the NestJS service it replaces (a checkout of it, on PostgreSQL), under the
# same `loadtest chain` and `loadtest storm` loads, in the same run, rounds
# interleaved. Prints each run's figures and the peak RSS of each server.
#
#   bench/compare.sh path/to/nest-service               # 3 rounds, 50 clients, 15 s each
#   ROUNDS=5 DURATION=30s CLIENTS=50 bench/compare.sh path/to/nest-service
#
# The NestJS service is not part of this repository: name it, required, as
# the argument or as NEST_SRC: its source (package.json, src/), which is
# copied and built (npm ci && npm run build) in a temporary directory; or as
# NEST_DIR: a copy already built (dist/main.js), run in place.
#
# Needs: Go, Node.js 20+ with npm, PostgreSQL on 127.0.0.1:5432 (trust auth).
set -euo pipefail
usage="usage: bench/compare.sh NEST_SRC   (or NEST_SRC=… / NEST_DIR=… bench/compare.sh)"
if [ $# -gt 1 ]; then echo "$usage" >&2; exit 2; fi
NEST_SRC=${1:-${NEST_SRC:-}}
NEST_DIR=${NEST_DIR:-}
# Checked before anything is built: the comparison needs the NestJS service.
if [ -n "$NEST_DIR" ]; then
  [ -f "$NEST_DIR/dist/main.js" ] || { echo "bench/compare.sh: NEST_DIR=$NEST_DIR has no dist/main.js: build it (npm ci && npm run build) or pass its source instead" >&2; exit 2; }
  NEST_DIR=$(cd "$NEST_DIR" && pwd)
elif [ -z "$NEST_SRC" ]; then
  echo "bench/compare.sh: the NestJS service to compare with is required: pass its source directory (package.json, src/) as the argument or as NEST_SRC, or a built copy as NEST_DIR" >&2
  echo "$usage" >&2
  exit 2
elif [ ! -f "$NEST_SRC/package.json" ]; then
  echo "bench/compare.sh: $NEST_SRC is not the NestJS service's source: it has no package.json" >&2
  exit 2
else
  NEST_SRC=$(cd "$NEST_SRC" && pwd)
fi
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-15s} CLIENTS=${CLIENTS:-50} USERS=${USERS:-50}
GO_PORT=${GO_PORT:-3201} NEST_PORT=${NEST_PORT:-3202}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

go build -o "$work/authsvc" .
echo "SQLite floor (BenchmarkSQLiteFloor, one rotation transaction, same pragmas):"
go test -run '^$' -bench SQLiteFloor -count 5 ./models | tee "$work/floor.txt" | grep -E '^Benchmark' 
if [ -z "$NEST_DIR" ]; then
  NEST_DIR="$work/nest"
  cp -r "$NEST_SRC" "$NEST_DIR"; chmod -R u+w "$NEST_DIR"
  (cd "$NEST_DIR" && npm ci --silent && npm run build --silent) >/dev/null
fi
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS nestbench" -c "CREATE DATABASE nestbench" >/dev/null

wait_up() { for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0; sleep 0.1; done; echo "port $1 did not come up" >&2; exit 1; }
peak_rss_mib() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }

rm -f "$work"/go.db*
THROTTLE=off BCRYPT_QUEUE_TIMEOUT=1m PORT=$GO_PORT DATABASE_URL="$work/go.db" JWT_SECRET=bench-secret-of-at-least-32-bytes-long "$work/authsvc" >"$work/go.log" 2>&1 & gopid=$!; pids+=("$gopid")
(cd "$NEST_DIR" && DATABASE_URL=postgres://postgres@127.0.0.1:5432/nestbench JWT_SECRET=bench-secret-of-at-least-32-bytes-long PORT=$NEST_PORT exec node dist/main.js) >"$work/nest.log" 2>&1 & nestpid=$!; pids+=("$nestpid")
wait_up "$GO_PORT"; wait_up "$NEST_PORT"

lt() { "$work/authsvc" loadtest "$@" --json 2>/dev/null || true; }
for round in $(seq 1 "$ROUNDS"); do
  for target in go nest; do
    port=$GO_PORT; pid=$gopid; [ $target = nest ] && { port=$NEST_PORT; pid=$nestpid; }
    lt chain --url "http://127.0.0.1:$port" -c "$CLIENTS" --users "$USERS" --duration "$DURATION" >"$work/$target-chain-$round.json"
    echo "round $round $target chain: $(python3 -c '
import json,sys
r=json.load(open(sys.argv[1]))
l=r["latencyMs"]
print("%d refreshes, %.0f/s, p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms, failed %d" % (r["requests"], r["refreshesPerSecond"], l["p50"], l["p90"], l["p99"], l["max"], r["failed"]))' "$work/$target-chain-$round.json" 2>/dev/null || echo unreadable) peak RSS $(peak_rss_mib $pid) MiB"
  done
done
rotations() { curl -s "http://127.0.0.1:$GO_PORT/metrics" | awk '/^auth_refresh_total\{result="rotated"\}/ {print $2}'; }
for target in go nest; do
  port=$GO_PORT; [ $target = nest ] && port=$NEST_PORT
  [ $target = go ] && before=$(rotations)
  lt storm --url "http://127.0.0.1:$port" -n 1000 --rounds 3 >"$work/$target-storm.json"
  [ $target = go ] && echo "go storm: $(( $(rotations) - before )) rotations (write transactions) for 3 rounds"
  echo "$target storm 3 x 1000: $(python3 -c '
import json,sys
r=json.load(open(sys.argv[1]))
t=r["total"]
print("statuses %s, successors per round %s, round ms %s" % (t["statuses"], [x["successors"] for x in r["rounds"]], [round(x["durationMs"],1) for x in r["rounds"]]))' "$work/$target-storm.json" 2>/dev/null || echo unreadable)"
done
echo "peak RSS after the storms: go $(peak_rss_mib $gopid) MiB, nest $(peak_rss_mib $nestpid) MiB"
python3 - "$work" "$ROUNDS" <<'PY'
import json, re, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
floor = statistics.median(float(m) for m in re.findall(r"([\d.]+) tx/s", open(f"{work}/floor.txt").read()))
med = {}
for t in ("go", "nest"):
    runs = [json.load(open(f"{work}/{t}-chain-{r}.json")) for r in range(1, rounds + 1)]
    med[t] = {k: statistics.median(f(r) for r in runs) for k, f in {
        "rps": lambda r: r["refreshesPerSecond"], "p50": lambda r: r["latencyMs"]["p50"],
        "p99": lambda r: r["latencyMs"]["p99"], "failed": lambda r: r["failed"]}.items()}
print(f"\nmedians of {rounds} chain runs:")
for t in ("go", "nest"):
    m = med[t]
    print(f"  {t:4}: {m['rps']:.0f} refreshes/s, p50 {m['p50']:.2f} ms, p99 {m['p99']:.2f} ms, failed {m['failed']:.0f}")
print(f"  SQLite floor: {floor:.0f} tx/s")
print(f"  go / SQLite floor: {med['go']['rps'] / floor:.2f}x;  go / nest: {med['go']['rps'] / med['nest']['rps']:.1f}x (SQLite vs PostgreSQL)")
PY
