package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/tokenrelay/authsvc/demo"
)

// TestDemo runs `authsvc demo` small: 3 rounds of 100 concurrent refreshes
// per side. The naive side answers 500 "record not found" in every round
// and keeps one caller per round logged in; the mutex side has no 500 but
// logs out every waiter with a 401; the service answers every caller 200
// with one successor from one rotation per round. The throwaway database is
// gone afterwards.
func TestDemo(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	var log lockedBuffer
	const rounds, n = 3, 100
	rep, err := demo.Run(t.Context(), demo.Config{Rounds: rounds, Concurrency: n, Pair: true, Serve: demoService(&log)})
	if err != nil {
		t.Fatalf("demo.Run: %v\nservice log:\n%s", err, log.String())
	}
	if entries, err := os.ReadDir(tmp); err != nil || len(entries) > 0 {
		t.Errorf("temporary directory after the demo: %v, %v; want it empty", entries, err)
	}

	naive := rep.Side(demo.Naive)
	if naive.Requests != rounds*n || naive.Statuses[500] < rounds || naive.Failures["500 record not found"] != naive.Statuses[500] {
		t.Errorf("naive: %d requests, statuses %v, failures %v; want %d, and at least one 500 record not found per round, no other 500",
			naive.Requests, naive.Statuses, naive.Failures, rounds*n)
	}
	if naive.Statuses[200] != rounds || naive.Kept != rounds {
		t.Errorf("naive: %d × 200, %d callers kept a session; want one per round", naive.Statuses[200], naive.Kept)
	}

	mu := rep.Side(demo.Mutex)
	if mu.Statuses[200] != rounds || mu.Statuses[401] != rounds*(n-1) || mu.Statuses[500] != 0 || mu.Kept != rounds {
		t.Errorf("mutex: statuses %v, kept %d; want one 200 per round, every waiter 401, no 500", mu.Statuses, mu.Kept)
	}

	svc := rep.Side(demo.Service)
	if svc.Statuses[200] != rounds*n || len(svc.Statuses) != 1 || svc.Kept != rounds*n || svc.Rotations != rounds {
		t.Errorf("service: statuses %v, kept %d, rotations %d; want all 200, all kept, one rotation per round", svc.Statuses, svc.Kept, svc.Rotations)
	}
	for r := range rounds {
		if svc.Successors[r] != 1 || svc.Stored[r] != 1 {
			t.Errorf("service, round %d: %d successors returned, %d stored; want 1 and 1", r+1, svc.Successors[r], svc.Stored[r])
		}
	}
	if strings.Contains(strings.ToLower(log.String()), "record not found") {
		t.Errorf("the service's log mentions record not found:\n%s", log.String())
	}

	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"naive", "mutex", "service", "× 500 record not found", "committed 3 rotations in 3 storms"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, table.String())
		}
	}
}

// TestDemoCLI: `authsvc demo` prints the table; bad flags are a usage error.
func TestDemoCLI(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	var out, errOut bytes.Buffer
	if code := cli(t.Context(), []string{"demo", "-rounds", "1", "-concurrency", "20"}, func(string) string { return "" }, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), "1 rounds × 20 concurrent refreshes") || !strings.Contains(out.String(), "service") {
		t.Errorf("authsvc demo = %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	for _, args := range [][]string{{"demo", "-rounds", "0"}, {"demo", "extra"}, {"demo", "-nope"}} {
		out.Reset()
		errOut.Reset()
		if code := cli(t.Context(), args, func(string) string { return "" }, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "usage: authsvc demo") {
			t.Errorf("authsvc %v = %d, stderr %q; want 2 and the usage", args, code, errOut.String())
		}
	}
	out.Reset()
	if code := cli(t.Context(), []string{"help"}, func(string) string { return "" }, &out, &errOut); code != 0 || !strings.Contains(out.String(), "demo [flags]") {
		t.Errorf("authsvc help does not list demo:\n%s", out.String())
	}
}
