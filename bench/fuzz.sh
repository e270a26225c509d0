#!/usr/bin/env bash
# Runs every fuzz target of the service, one after another, for FUZZTIME
# each, and prints one summary line per target: its result, executions and
# the inputs it found interesting. Exits 1 if any target failed; a failing
# input is written under the package's testdata/fuzz/<target>/, where
# `go test` replays it from then on.
#
#   bench/fuzz.sh                       # 60s per target
#   FUZZTIME=10s bench/fuzz.sh
#   TARGETS='JSON|Form' bench/fuzz.sh   # only the targets matching a regexp
#
# Needs: Go. The tests/ targets use SQLite files of their own.
set -uo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-60s}
TARGETS=${TARGETS:-.}

# package target: every parser or verifier that takes client bytes.
all=(
  "./bodyparser FuzzParseJSON"
  "./bodyparser FuzzParseForm"
  "./bodyparser FuzzDecodeCharset"
  "./bodyparser FuzzReadBody"
  "./handlers FuzzInput"
  "./handlers FuzzBearerToken"
  "./tests FuzzAuthenticate"
  "./tests FuzzRefreshToken"
  "./tests FuzzServer"
)

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
failed=0
summary=()
for entry in "${all[@]}"; do
  read -r pkg target <<<"$entry"
  [[ $target =~ $TARGETS ]] || continue
  log="$logs/$target.log"
  echo "== $target ($pkg, $FUZZTIME)" >&2
  start=$SECONDS
  go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" >"$log" 2>&1
  status=$?
  # The fuzzer's last progress line: "fuzz: elapsed: 1m0s, execs: 123 (2/sec), new interesting: 4 (total: 9)".
  progress=$(grep -E '^fuzz: elapsed: .*execs: ' "$log" | tail -n 1)
  execs=$(sed -nE 's/.*execs: ([0-9]+) .*/\1/p' <<<"$progress")
  interesting=$(sed -nE 's/.*new interesting: ([0-9]+) \(total: ([0-9]+)\).*/\1 new, \2 in corpus/p' <<<"$progress")
  if [ "$status" -eq 0 ]; then
    result=PASS
  else
    result=FAIL
    failed=1
    echo "---- $target failed: go test exited with status $status; its output:" >&2
    if grep -qvE '^fuzz: elapsed: ' "$log"; then
      grep -vE '^fuzz: elapsed: ' "$log" | tail -n 40 >&2
    else # nothing but progress: the run was cut short (a signal, the OOM killer)
      tail -n 5 "$log" >&2
    fi
  fi
  summary+=("$(printf '%-4s %-18s %-11s %5ss  execs %-10s %s' "$result" "$target" "$pkg" "$((SECONDS - start))" "${execs:--}" "${interesting:-}")")
done

echo
echo "Fuzzing, $FUZZTIME per target:"
printf '%s\n' "${summary[@]}"
exit "$failed"
