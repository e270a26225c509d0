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
# and where the CPU goes: during each run, the CPU time of the instances, of
# PostgreSQL's processes, of Redis and of the load tool (for the floor,
# PostgreSQL's alone), per refresh, medians over the rounds.
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

# Where the CPU goes: CPU time (utime + stime, /proc/PID/stat) of each role
# taking part, over the middle of each run, by one sampler process (a
# sampler that forked curl and awk per process and per sample took a
# noticeable share of the two cores from what it measured).
cat >"$work/sampler.py" <<'PY'
# sampler.py OUT WATCH-PID PORTS PIDS REDIS-PID: every 0.5 s until WATCH-PID
# exits, a line "seconds rotations instances postgres redis watched" to OUT
# (CPU in clock ticks; rotations summed over the instances' /metrics).
import os, sys, time, urllib.request
out, watch, ports, pids, redis = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split(), sys.argv[5]
def ticks(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])  # utime, stime
    except OSError:
        return 0
def comm(pid):
    try:
        return open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        return ""
def postgres():
    return sum(ticks(p) for p in os.listdir("/proc") if p.isdigit() and comm(p) == "postgres")
def rotations():
    n = 0
    for port in ports:
        try:
            for line in urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode().splitlines():
                if line.startswith('auth_refresh_total{result="rotated"}'):
                    n += float(line.split()[1])
        except OSError:
            pass
    return n
with open(out, "w") as f:
    while os.path.exists(f"/proc/{watch}"):
        f.write(f"{time.time()} {rotations()} {sum(ticks(p) for p in pids)} {postgres()} {ticks(redis)} {ticks(watch)}\n")
        f.flush()
        time.sleep(0.5)
PY
# cpu_split NAME [ROTATIONS-PER-SECOND]: the samples' CPU per refresh of each
# role, as one JSON line: between the first sample that shows rotations and
# the last one taken while the watched process ran (its bcrypt setup and its
# end left out). For the floor (a rate given), PostgreSQL's alone, over all
# but the first and last two samples, at that rate.
cpu_split() {
  python3 - "$1" "$work/samples" "$tck" "${2:-}" <<'PY'
import json, sys
name, path, tck, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
s = [list(map(float, l.split())) for l in open(path) if len(l.split()) == 6]
try:
    if rate:
        a, b = s[2], s[-3]
        n = float(rate) * (b[0] - a[0])
        print(json.dumps({"name": name, "postgres_us": (b[3] - a[3]) / tck / n * 1e6}))
    else:
        a = next(x for x in s if x[1] > s[0][1])
        b = s[-2]  # the last sample may be taken as the load tool exits
        n = b[1] - a[1]
        us = lambda i: (b[i] - a[i]) / tck / n * 1e6
        print(json.dumps({"name": name, "instances_us": us(2), "postgres_us": us(3), "redis_us": us(4), "load_us": us(5)}))
except Exception as e:
    print(json.dumps({"name": name, "error": repr(e)}))
PY
}
tck=$(getconf CLK_TCK)

# chain NAME URL-FLAGS...: one chain run, its figures appended to results.
chain() {
  local name=$1; shift
  "$work/authsvc" loadtest chain "$@" -c "$CLIENTS" --users "$CLIENTS" --duration "$DURATION" --json >"$work/run.json" 2>/dev/null &
  local load=$!
  python3 "$work/sampler.py" "$work/samples" "$load" "${ports[*]}" "${pids[*]}" "${redis_pid:-0}" &
  local sampler=$!
  wait "$load" || true
  wait "$sampler" || true
  cpu_split "$name" >>"$work/cpu"
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
  pgbench -n -M prepared -D id=0 -c "$CLIENTS" -j 2 -T "${DURATION%s}" -f bench/pg-rotation.sql "$dburl" >"$work/pgbench.out" 2>/dev/null &
  local bench=$!
  # PostgreSQL's CPU while pgbench runs (its backends exit with it, taking
  # their counters along: the sampler stops short of its end); pgbench's
  # own CPU is not counted.
  python3 "$work/sampler.py" "$work/samples" "$bench" "" "" 0 &
  local sampler=$!
  wait "$bench" || true
  wait "$sampler" || true
  tps=$(awk '/^tps/ {print $3}' "$work/pgbench.out")
  cpu_split floor "${tps:-0}" >>"$work/cpu"
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

CLIENTS=$CLIENTS python3 - "$work/results" "$work/cpu" <<'PY'
import json, os, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
cpu = [json.loads(l) for l in open(sys.argv[2])]
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
print("\nCPU per refresh (per rotation for the floor), medians, us:")
for name in ["floor", "cluster", "single", "degraded"]:
    rs = [c for c in cpu if c["name"] == name and "error" not in c]
    if not rs:
        continue
    parts = [(k, statistics.median(c[k] for c in rs)) for k in ["instances_us", "postgres_us", "redis_us", "load_us"] if k in rs[0]]
    total = sum(v for _, v in parts)
    print("  %-9s %s%s" % (name, ", ".join("%s %.0f" % (k[:-3], v) for k, v in parts), ", total %.0f" % total if len(parts) > 1 else ""))
PY
