#!/usr/bin/env bash
# The service on its default configuration (SQLite file, WAL,
# synchronous=FULL, group commit) against SQLite's own floor, in one run:
#
#   floor    BenchmarkSQLiteFloor (models/floor_test.go): one rotation
#            transaction after another through database/sql, no HTTP, with
#            synchronous=NORMAL (the reference of the ratios) and FULL; run
#            right before every chain run, so that each run has a floor
#            measured a few seconds apart (the machine's speed drifts by
#            tens of percent over minutes) and its ratio is chain / that floor
#   chain    `authsvc loadtest chain` with CLIENTS clients, ROUNDS runs of
#            DURATION on a fresh database: refreshes/s, p50/p99/max, and the
#            server's CPU time per refresh
#   rows     the same on a database seeded first with N rotated rows, for
#            each N in ROWS (bench/seed: one INSERT in one transaction)
#   storm    STORM concurrent refreshes of one token against the same
#            client's STORM concurrent GET /health (bench/stormratio)
#
#   bench/sqlite.sh                                  # 5 runs of 10 s, 50 clients, fresh database only
#   ROWS="1000000 5000000" bench/sqlite.sh           # and after 1 M and 5 M rotated rows
#   ROUNDS=2 DURATION=5s ROWS=100000 bench/sqlite.sh # a quick check that it works
#   PROFILE=cpu.pprof bench/sqlite.sh                # and a CPU profile of the first run (PPROF_ADDR)
#   AUTHSVC=/tmp/old/authsvc bench/sqlite.sh         # another build of the service (a before/after)
#
# Server CPU per refresh: while a run goes on, the script samples, every
# SAMPLE seconds, the server's CPU time (utime + stime of /proc/PID/stat)
# and its rotations (auth_refresh_total{result="rotated"} from /metrics).
# Between the first sample that shows rotations and the first that shows
# their final count, CPU time / rotations is the CPU per refresh of the
# steady load: the load tool's registrations and logins before it (bcrypt)
# and the idle tail after it are left out. In a chain load every refresh is
# one rotation.
#
# Needs: Go, python3, curl, Linux (/proc). The server runs as a new user
# would run it: the default configuration, LOG_LEVEL=info (a log line per
# request, to a file), with THROTTLE=off for the load tool's logins.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-10s} CLIENTS=${CLIENTS:-50} ROWS=${ROWS:-}
STORM=${STORM:-1000} STORM_ROUNDS=${STORM_ROUNDS:-6} SAMPLE=${SAMPLE:-0.25} PROFILE=${PROFILE:-}
for tool in python3 curl; do
  command -v "$tool" >/dev/null || { echo "bench/sqlite.sh: $tool is not installed" >&2; exit 2; }
done
[ -r /proc/self/stat ] || { echo "bench/sqlite.sh: needs /proc (Linux)" >&2; exit 2; }

work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
tck=$(getconf CLK_TCK)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=${PORT:-$(free_port)} PPROF_PORT=${PPROF_PORT:-$(free_port)}
url="http://127.0.0.1:$PORT"

echo "building"
if [ -n "${AUTHSVC:-}" ]; then cp "$AUTHSVC" "$work/authsvc"; else go build -o "$work/authsvc" .; fi
go build -o "$work/seed" ./bench/seed
go build -o "$work/stormratio" ./bench/stormratio

go test -c -o "$work/models.test" ./models

# floor_run: one run of BenchmarkSQLiteFloor, its lines appended to floor.txt;
# prints the NORMAL floor in tx/s.
floor_run() {
  (cd "$work" && ./models.test -test.run '^$' -test.bench SQLiteFloor -test.count 1) | grep -E '^Benchmark' | tee -a "$work/floor.txt" |
    awk '/synchronous=NORMAL/ {for (i = 1; i <= NF; i++) if ($(i+1) == "tx/s") print $i}'
}

# start_server DB: the service on DB, in the background; waits for /health.
start_server() {
  local pprof=()
  [ -n "$PROFILE" ] && pprof=(PPROF_ADDR="127.0.0.1:$PPROF_PORT")
  env THROTTLE=off BCRYPT_QUEUE_TIMEOUT=1m LOG_LEVEL="${LOG_LEVEL:-info}" PORT="$PORT" DATABASE_URL="$1" \
    JWT_SECRET=bench-secret-of-at-least-32-bytes-long "${pprof[@]}" "$work/authsvc" >>"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 400); do
    kill -0 "$server_pid" 2>/dev/null || break # exited: the port was taken, or the database refused
    # Answered, and still running: not another process on that port.
    curl -sf "$url/health" >/dev/null && sleep 0.2 && kill -0 "$server_pid" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "the service did not come up; its log:" >&2; tail -20 "$work/server.log" >&2; exit 1
}
stop_server() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=; }

# rotations: the running server's auth_refresh_total{result="rotated"}.
rotations() {
  local n
  n=$(curl -s "$url/metrics" | awk '/^auth_refresh_total\{result="rotated"\}/ {print $2}')
  echo "${n:-0}"
}

# sample: one line "seconds cpu-ticks rotations load-tool-cpu-ticks" of the
# running server and load tool.
sample() {
  local ticks load
  ticks=$(awk '{print $14 + $15}' "/proc/$server_pid/stat")
  load=$(awk '{print $14 + $15}' "/proc/$load_pid/stat" 2>/dev/null || echo -1)
  echo "$(date +%s.%N) $ticks $(rotations) $load"
}

# chain PHASE ROUND: one chain run with the server sampled beside it; its
# figures are appended to results.
chain() {
  local phase=$1 round=$2 floor
  floor=$(floor_run)
  : >"$work/samples"
  # --timeout bounds the setup's registrations and logins too: bcrypts, 2 x CLIENTS of them.
  "$work/authsvc" loadtest chain --url "$url" -c "$CLIENTS" --users "$CLIENTS" --duration "$DURATION" --timeout 60s --json \
    >"$work/run.json" 2>"$work/run.err" &
  load_pid=$!
  ( while :; do sample >>"$work/samples"; sleep "$SAMPLE"; done ) &
  local sampler=$!
  local profiler=
  if [ -n "$PROFILE" ] && [ "$phase" = fresh ] && [ "$round" = 1 ]; then
    # From the first rotation on (after the load tool's bcrypts), for all
    # but the last two seconds of the run: the steady load.
    local secs
    secs=$(python3 -c 'import sys,re; m=re.fullmatch(r"(\d+)s",sys.argv[1]); print(max(1,int(m.group(1))-2) if m else 5)' "$DURATION")
    (
      before=$(rotations)
      while [ "$(rotations)" = "$before" ]; do sleep 0.1; done
      curl -s "http://127.0.0.1:$PPROF_PORT/debug/pprof/profile?seconds=$secs" >"$PROFILE"
    ) &
    profiler=$!
  fi
  wait "$load_pid" || true
  sleep "$SAMPLE"; sleep "$SAMPLE" # two samples of the idle tail: the final count
  kill "$sampler"; wait "$sampler" 2>/dev/null || true
  if [ -n "$profiler" ]; then
    wait "$profiler" || true
    echo "  CPU profile of this run: $PROFILE (go tool pprof -top $PROFILE)"
  fi
  python3 - "$phase" "$round" "$work/run.json" "$work/samples" "$tck" "${floor:-0}" >>"$work/results" <<'PY'
import json, sys
phase, rnd, path, samples, tck = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
out = {"phase": phase, "round": rnd, "floor": float(sys.argv[6])}
try:
    r = json.load(open(path))
    l = r["latencyMs"]
    out.update(rate=r["refreshesPerSecond"], p50=l["p50"], p99=l["p99"], max=l["max"], failed=r["failed"])
    out.update(ratio=out["rate"] / out["floor"] if out["floor"] else 0)
    s = [tuple(map(float, line.split())) for line in open(samples) if len(line.split()) == 4]
    first = next(i for i, x in enumerate(s) if x[2] > s[0][2])  # rotations under way
    last = next(i for i, x in enumerate(s) if x[2] == s[-1][2])  # the final count reached
    rotations, cpu = s[last][2] - s[first][2], (s[last][1] - s[first][1]) / tck
    out.update(cpu_us=cpu / rotations * 1e6, steady_s=s[last][0] - s[first][0], steady_rotations=rotations)
    # The load tool's CPU over the same samples, while it still ran (-1: gone).
    lt = [x for x in s[first:last + 1] if x[3] >= 0]
    out.update(load_us=(lt[-1][3] - lt[0][3]) / tck / (lt[-1][2] - lt[0][2]) * 1e6)
except Exception as e:
    out["error"] = repr(e)
print(json.dumps(out))
PY
  python3 - "$work/results" "$work/run.err" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).readlines()[-1])
if "error" in r:
    print("  %s run %d: unreadable (%s); the load tool said: %s" % (r["phase"], r["round"], r["error"], open(sys.argv[2]).read()[-300:].strip()))
else:
    print("  %s run %d: floor %.0f tx/s, %.0f refreshes/s = %.2f x, p50 %.2f ms, p99 %.2f ms, max %.2f ms, failed %d, server CPU %.0f us/refresh, load tool %.0f us (%.0f rotations over %.1f s)"
          % (r["phase"], r["round"], r["floor"], r["rate"], r["ratio"], r["p50"], r["p99"], r["max"], r["failed"], r["cpu_us"], r["load_us"], r["steady_rotations"], r["steady_s"]))
PY
}

# phase NAME ROWS: a fresh database; when ROWS > 0, migrated by the service
# (authsvc migrate) and seeded with ROWS rotated rows; then ROUNDS chain runs.
phase() {
  local name=$1 rows=$2 db="$work/$1.db"
  if [ "$rows" -gt 0 ]; then echo "phase $name: a database seeded with $rows rotated rows"; else echo "phase $name: a fresh database"; fi
  if [ "$rows" -gt 0 ]; then
    DATABASE_URL="$db" "$work/authsvc" migrate >/dev/null # the service's own schema
    "$work/seed" -rows "$rows" "$db"
  fi
  start_server "$db"
  for round in $(seq 1 "$ROUNDS"); do chain "$name" "$round"; done
  if [ "$name" = fresh ]; then
    echo "storm: $STORM concurrent refreshes of one token against the same client's $STORM GET /health, $STORM_ROUNDS rounds"
    "$work/stormratio" -url "$url" -n "$STORM" -rounds "$STORM_ROUNDS" -json >"$work/storm.json"
  fi
  stop_server
  rm -f "$db" "$db"-*
}

phase fresh 0
for rows in $ROWS; do phase "rows=$rows" "$rows"; done

python3 - "$work" "$CLIENTS" <<'PY'
import json, re, statistics, sys
work, clients = sys.argv[1], sys.argv[2]
floors = {}
for name, tps in re.findall(r"^(Benchmark\S+?)(?:-\d+)?\s.*?([\d.]+) tx/s", open(f"{work}/floor.txt").read(), re.M):
    floors.setdefault(name, []).append(float(tps))
floor = {n: statistics.median(v) for n, v in floors.items()}
runs = [json.loads(l) for l in open(f"{work}/results")]
phases = list(dict.fromkeys(r["phase"] for r in runs))
print(f"\nmedians, {clients} clients:")
for n, v in floor.items():
    print(f"  SQLite floor {n}: {v:.0f} tx/s ({len(floors[n])} runs)")
# The reference of the ratios is the NORMAL floor (no fsync per commit, the
# faster one), each chain run against the floor run right before it.
for p in phases:
    ok = [r for r in runs if r["phase"] == p and "error" not in r]
    if not ok:
        print(f"  {p}: no readable run")
        continue
    med = lambda k: statistics.median(r[k] for r in ok)
    print(f"  {p:14} {med('rate'):6.0f} refreshes/s = {med('ratio'):.2f} x floor (median of each run's ratio to the NORMAL floor "
          f"run just before it; those floors' median {med('floor'):.0f} tx/s), p50 {med('p50'):.2f} ms, p99 {med('p99'):.2f} ms, "
          f"max {med('max'):.2f} ms, server CPU {med('cpu_us'):.0f} us/refresh, load tool CPU {med('load_us'):.0f} us/refresh, "
          f"failed {sum(r['failed'] for r in ok)} ({len(ok)} runs)")
try:
    s = json.load(open(f"{work}/storm.json"))
    print(f"  storm of {s['n']}: {s['stormMs']:.1f} ms against {s['healthMs']:.1f} ms for the same client's {s['n']} GET /health "
          f"= {s['ratio']:.2f} x (medians of {s['rounds']} rounds)")
except Exception as e:
    print(f"  storm: unreadable ({e!r})")
PY
