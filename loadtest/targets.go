package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// targets are the clients of the --url instances, in the order given. A run
// spreads its requests over them round-robin: request i goes to at(i).
type targets []*client

// newTargets returns a client for each of urls, each keeping up to conns
// idle connections and giving every request at most timeout.
func newTargets(urls []string, conns int, timeout time.Duration) targets {
	ts := make(targets, len(urls))
	for i, u := range urls {
		ts[i] = newClient(u, conns, timeout)
	}
	return ts
}

// close closes the idle connections of every target.
func (ts targets) close() {
	for _, c := range ts {
		c.close()
	}
}

// at returns the target of the i-th request of a round-robin: i mod len(ts).
func (ts targets) at(i int) *client { return ts[i%len(ts)] }

// urls returns the base URLs of the targets.
func (ts targets) urls() []string {
	urls := make([]string, len(ts))
	for i, c := range ts {
		urls[i] = c.base
	}
	return urls
}

// signIn checks, before a run, that every target can be used: acct registers
// at the first target (or logs in there, when register is false), then logs
// in at each of the others at once. A target fails the check when it is
// unreachable, does not answer within the timeout, does not speak the
// contract, or does not know acct, which means it does not share the first
// one's database. signIn returns the refresh token of the first sign-in, or
// the error of the first target, in --url order, that failed; each error
// names its target's URL.
func (ts targets) signIn(ctx context.Context, acct account, register bool) (string, error) {
	first, token, err := ts[0], "", error(nil)
	if register {
		token, err = first.register(ctx, acct)
	} else {
		token, err = first.session(ctx, acct)
	}
	if err != nil {
		return "", err
	}
	errs := make([]error, len(ts))
	var wg sync.WaitGroup
	for i := 1; i < len(ts); i++ {
		wg.Go(func() { _, errs[i] = ts[i].session(ctx, acct) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return "", err
	}
	for _, err := range errs {
		var te *targetError
		if errors.As(err, &te) && !te.foreign && te.status == http.StatusUnauthorized {
			return "", fmt.Errorf("%w: it does not know the user just signed in at %s; the instances must share one database", err, first.base)
		}
		if err != nil {
			return "", err
		}
	}
	return token, nil
}

// warm opens up to n keep-alive connections in all, spread evenly over the
// targets, at once: see client.warm.
func (ts targets) warm(ctx context.Context, n int) {
	per := (n + len(ts) - 1) / len(ts)
	var wg sync.WaitGroup
	for _, c := range ts {
		wg.Go(func() { c.warm(ctx, per) })
	}
	wg.Wait()
}

// instanceReport is the share of one --url in a run: its requests.
type instanceReport struct {
	URL string `json:"url"`
	tallyReport
}

// instanceReports returns the share of each target, tallies[i] being that of
// ts[i].
func (ts targets) instanceReports(tallies []*tally) []instanceReport {
	out := make([]instanceReport, len(ts))
	for i, c := range ts {
		out[i] = instanceReport{URL: c.base, tallyReport: tallies[i].report()}
	}
	return out
}

// newTallies returns n empty tallies.
func newTallies(n int) []*tally {
	ts := make([]*tally, n)
	for i := range ts {
		ts[i] = newTally()
	}
	return ts
}
