#!/usr/bin/env bash
# The service on PostgreSQL against PostgreSQL's own floor, in one run with
# rounds interleaved:
#
#   floor     pgbench running bench/pg-rotation.sql: the statements of one
#             rotation, nothing else, at the same number of clients
#   cluster   three instances sharing the database and a Redis lock, the
#             load tool's clients spread round-robin over them
#   single    one of those instances alone
#   degraded  the three instances with Redis killed: refreshes go on under
#             the database compare-and-swap alone
#
#   bench/cluster.sh                              # 5 rounds, 50 clients, 10 s each
#   ROUNDS=3 DURATION=15s CLIENTS=50 bench/cluster.sh
#
# Needs: Go, PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres), its
# pgbench and psql, and redis-server (the script starts its own on a free
# port, and kills it for the degraded runs). It creates and drops the
# database authsvc_bench.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-10s} CLIENTS=${CLIENTS:-50}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
DB=authsvc_bench
for tool in pgbench psql redis-server python3; do
  command -v "$tool" >/dev/null || { echo "bench/cluster.sh: $tool is not installed" >&2; exit 2; }
done

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${redis_pid:-}" ] && kill "$redis_pid" 2>/dev/null || true
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0; sleep 0.05; done; echo "port $1 did not come up" >&2; exit 1; }

go build -o "$work/authsvc" .
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
dburl="$PG/$DB?sslmode=disable"
DATABASE_URL=$dburl "$work/authsvc" migrate >/dev/null
psql "$dburl" -qc "INSERT INTO users (id, email, password_hash, created_at) VALUES ('bench-user', 'bench@example.com', 'x', now())" >/dev/null

redis_port=$(free_port)
start_redis() {
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 1 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "redis-server did not come up" >&2; exit 1
}
start_redis

secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
ports=()
for i in 1 2 3; do
  port=$(free_port); ports+=("$port")
  # 3 x 14 pooled connections stay idle while pgbench takes its 50: all
  # within PostgreSQL's default max_connections of 100.
  DB_MAX_CONNS=14 THROTTLE=off BCRYPT_QUEUE_TIMEOUT=1m PORT=$port DATABASE_URL=$dburl REDIS_URL="redis://127.0.0.1:$redis_port/0" JWT_SECRET=$secret LOG_LEVEL=warn \
    "$work/authsvc" >"$work/instance$i.log" 2>&1 &
  pids+=($!)
done
for port in "${ports[@]}"; do wait_up "$port"; done
cluster_urls=(--url "http://127.0.0.1:${ports[0]}" --url "http://127.0.0.1:${ports[1]}" --url "http://127.0.0.1:${ports[2]}")
single_urls=(--url "http://127.0.0.1:${ports[0]}")

# chain NAME URL-FLAGS...: one chain run, its figures appended to results.
chain() {
  local name=$1; shift
  "$work/authsvc" loadtest chain "$@" -c "$CLIENTS" --users "$CLIENTS" --duration "$DURATION" --json >"$work/run.json" 2>/dev/null || true
  python3 - "$name" "$work/run.json" >>"$work/results" <<'PY'
import json, sys
name, path = sys.argv[1], sys.argv[2]
try:
    r = json.load(open(path))
    l = r["latencyMs"]
    print(json.dumps({"name": name, "rate": r["refreshesPerSecond"], "p50": l["p50"], "p99": l["p99"], "max": l["max"], "failed": r["failed"]}))
except Exception as e:
    print(json.dumps({"name": name, "error": str(e)}))
PY
  tail -1 "$work/results"
}

floor() {
  local tps
  tps=$(pgbench -n -M prepared -D id=0 -c "$CLIENTS" -j 2 -T "${DURATION%s}" -f bench/pg-rotation.sql "$dburl" 2>/dev/null |
    awk '/^tps/ {print $3}')
  echo "{\"name\": \"floor\", \"rate\": ${tps:-0}}" | tee -a "$work/results"
}

for round in $(seq 1 "$ROUNDS"); do
  echo "round $round"
  floor
  chain cluster "${cluster_urls[@]}"
  chain single "${single_urls[@]}"
  kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true
  chain degraded "${cluster_urls[@]}"
  start_redis
  for port in "${ports[@]}"; do wait_up "$port"; done
done

CLIENTS=$CLIENTS python3 - "$work/results" <<'PY'
import json, os, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in runs:
    by.setdefault(r["name"], []).append(r)
med = lambda name, key: statistics.median(r[key] for r in by[name] if key in r)
floor = med("floor", "rate")
print("\nmedians of %d rounds, %s clients:" % (len(by["floor"]), os.environ.get("CLIENTS", "50")))
print("  PostgreSQL floor (pgbench, bench/pg-rotation.sql): %.0f rotations/s" % floor)
for name, label in [("cluster", "3 instances + Redis lock"), ("single", "1 instance + Redis lock"), ("degraded", "3 instances, Redis down")]:
    print("  %-26s %6.0f refreshes/s = %.2f x floor, p50 %.2f ms, p99 %.2f ms, max %.2f ms, failed %d"
          % (label, med(name, "rate"), med(name, "rate") / floor, med(name, "p50"), med(name, "p99"), med(name, "max"),
             sum(r.get("failed", 0) for r in by[name])))
print("  degraded / cluster: %.2f" % (med("degraded", "rate") / med("cluster", "rate")))
PY
