// Command stormratio prices the storm of concurrent refreshes of one token
// against the same client's floor: for each round, -n concurrent GET
// /health, released together, then -n concurrent POST /auth/refresh of one
// refresh token, released together, over the same pool of keep-alive
// connections. /health does no database work, so its round is what the
// client, the loopback and the HTTP server cost for -n requests at once;
// the ratio of the two rounds is what the refresh storm adds, on any
// machine.
//
//	go run ./bench/stormratio -url http://127.0.0.1:3000 -n 1000 -rounds 5
//
// It registers a fresh user (the server needs THROTTLE=off for repeated
// runs), checks that every refresh of a round answers 200 with the same
// successor, and refreshes that successor in the next round. It prints each
// round, then the medians and their ratio; -json prints them as one object.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/tokenrelay/authsvc/internal/barrier"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:3000", "base URL of the server")
	n := flag.Int("n", 1000, "concurrent requests per round")
	rounds := flag.Int("rounds", 5, "rounds")
	asJSON := flag.Bool("json", false, "print the medians as one JSON object")
	flag.Parse()
	if err := run(*base, *n, *rounds, *asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "stormratio:", err)
		os.Exit(1)
	}
}

func run(base string, n, rounds int, asJSON bool) error {
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConns: n, MaxIdleConnsPerHost: n, IdleConnTimeout: time.Minute}}
	ctx := context.Background()
	email := "stormratio-" + rand.Text()[:12] + "@example.com"
	status, body, err := do(ctx, hc, http.MethodPost, base+"/auth/register", map[string]string{"email": email, "password": rand.Text()})
	if err != nil || status != http.StatusCreated {
		return fmt.Errorf("register: %d %s %v", status, body, err)
	}
	var session struct{ RefreshToken string }
	if err := json.Unmarshal(body, &session); err != nil {
		return err
	}
	token := session.RefreshToken

	var healthMS, stormMS []float64
	for r := 1; r <= rounds; r++ {
		// The first burst also opens the connections; from the second round
		// on, both bursts find them open.
		health, _ := burst(n, func() (int, []byte, error) { return do(ctx, hc, http.MethodGet, base+"/health", nil) })
		storm, answers := burst(n, func() (int, []byte, error) {
			return do(ctx, hc, http.MethodPost, base+"/auth/refresh", map[string]string{"refreshToken": token})
		})
		successors := map[string]bool{}
		for _, a := range answers {
			var t struct{ RefreshToken string }
			if a.err != nil || a.status != http.StatusOK || json.Unmarshal(a.body, &t) != nil {
				return fmt.Errorf("round %d: a refresh answered %d %s %v", r, a.status, a.body, a.err)
			}
			successors[t.RefreshToken] = true
		}
		if len(successors) != 1 {
			return fmt.Errorf("round %d: %d different successors, want 1", r, len(successors))
		}
		for t := range successors {
			token = t
		}
		fmt.Fprintf(os.Stderr, "round %d: %d x GET /health %.1f ms, %d x refresh of one token %.1f ms (%.2fx)\n",
			r, n, ms(health), n, ms(storm), ms(storm)/ms(health))
		if r > 1 || rounds == 1 { // the first round dialled the connections
			healthMS, stormMS = append(healthMS, ms(health)), append(stormMS, ms(storm))
		}
	}
	h, s := median(healthMS), median(stormMS)
	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(map[string]any{"n": n, "rounds": len(healthMS), "healthMs": h, "stormMs": s, "ratio": s / h})
	}
	fmt.Printf("storm of %d: median %.1f ms; the same client's %d x GET /health: %.1f ms; ratio %.2f (%d rounds, the first left out)\n",
		n, s, n, h, s/h, len(healthMS))
	return nil
}

type answer struct {
	status int
	body   []byte
	err    error
}

// burst runs fn n times at once, released together, and returns the time
// from the release to the last answer, and the answers.
func burst(n int, fn func() (int, []byte, error)) (time.Duration, []answer) {
	answers := make([]answer, n)
	elapsed := barrier.Release(n, nil, func(i int) {
		a := &answers[i]
		a.status, a.body, a.err = fn()
	})
	return elapsed, answers
}

func do(ctx context.Context, hc *http.Client, method, url string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, b, err
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(xs []float64) float64 {
	xs = slices.Sorted(slices.Values(xs))
	if len(xs) == 0 {
		return 0
	}
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}
