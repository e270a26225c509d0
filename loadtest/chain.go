package loadtest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tokenrelay/authsvc/internal/barrier"
)

const chainUsage = `usage: loadtest chain [flags]

Registers --users users; then -c clients each log in (client i as user i mod
--users, so each client has a token family of its own) and chain refreshes,
each with the refresh token it last received, for --duration or until --count
refreshes were made in all. A client whose refresh fails logs in again to go
on. Reports refreshes per second, latency percentiles, statuses and errors.

With several --url, user 0 registers at the first and logs in at each other
one (an instance that does not know the user does not share the database:
exit status 2); the other users register, and the clients log in,
round-robin over the instances; and each client's successive requests go
round-robin too, so that a token minted by one instance is refreshed at the
next. The summary shows each instance's refreshes, latency and statuses.

flags:
`

// chainConfig is the configuration of a chain run.
type chainConfig struct {
	commonFlags
	users, clients int
	duration       time.Duration
	count          int
	durationSet    bool
}

func (cfg *chainConfig) check() error {
	if err := cfg.commonFlags.check(); err != nil {
		return err
	}
	switch {
	case cfg.users < 1:
		return fmt.Errorf("--users %d: want at least 1", cfg.users)
	case cfg.clients < 1:
		return fmt.Errorf("-c %d: want at least 1", cfg.clients)
	case cfg.count < 0:
		return fmt.Errorf("--count %d: want at least 1", cfg.count)
	case cfg.count > 0 && cfg.durationSet:
		return errors.New("--duration and --count exclude each other")
	case cfg.count == 0 && cfg.duration <= 0:
		return fmt.Errorf("--duration %s: want a positive duration", cfg.duration)
	}
	return nil
}

// chainReport is the summary of a chain run.
type chainReport struct {
	Mode               string                `json:"mode"`          // "chain"
	URL                string                `json:"url,omitempty"` // the target, when there is one
	URLs               []string              `json:"urls"`          // the targets, in --url order
	Users              int                   `json:"users"`
	Clients            int                   `json:"clients"`
	PlannedDurationMS  float64               `json:"plannedDurationMs,omitempty"`
	PlannedCount       int                   `json:"plannedCount,omitempty"`
	tallyReport                              // the refresh requests
	ElapsedMS          float64               `json:"elapsedMs"`
	RefreshesPerSecond float64               `json:"refreshesPerSecond"`
	LatencyMS          latencyReport         `json:"latencyMs"` // of the refresh requests
	Relogins           tallyReport           `json:"relogins"`  // logins after a failed refresh
	Instances          []chainInstanceReport `json:"instances"`
	Interrupted        bool                  `json:"interrupted"`
}

// chainInstanceReport is the share of one --url in a chain run.
type chainInstanceReport struct {
	URL         string        `json:"url"`
	tallyReport               // the refresh requests
	LatencyMS   latencyReport `json:"latencyMs"` // of the refresh requests
	Relogins    tallyReport   `json:"relogins"`
}

// chain runs the chain mode.
func chain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cfg chainConfig
	fs := newFlagSet("chain", chainUsage, stderr)
	cfg.commonFlags.register(fs)
	fs.IntVar(&cfg.users, "users", 10, "number of users to register")
	fs.IntVar(&cfg.clients, "c", 50, "concurrent clients")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long to run")
	fs.IntVar(&cfg.count, "count", 0, "run until this many refreshes in all, instead of for --duration")
	parsed := parse(fs, args, stderr, func() error {
		fs.Visit(func(f *flag.Flag) { cfg.durationSet = cfg.durationSet || f.Name == "duration" })
		return cfg.check()
	})
	if parsed >= 0 {
		return parsed
	}

	ts := newTargets(cfg.urls.urls, cfg.clients, cfg.timeout)
	defer ts.close()
	accts, tokens, err := chainSetup(ctx, ts, cfg)
	if err != nil {
		return setupFailed(ctx, stderr, err)
	}

	var total int64
	if cfg.count > 0 {
		total = int64(cfg.count)
	}
	prog := startProgress(stderr, total, cfg.duration, true)
	rep := runChain(ctx, ts, cfg, accts, tokens, prog)
	prog.finish()
	failed := rep.Failed > 0 || rep.Relogins.Failed > 0
	return finish(stdout, stderr, cfg.json, rep, func(w io.Writer) error { return writeChainTable(w, rep) }, failed)
}

// chainSetup registers the users and logs every client in. It returns the
// accounts and each client's refresh token. User i registers at ts.at(i),
// and client i logs in at ts.at(i).
func chainSetup(ctx context.Context, ts targets, cfg chainConfig) ([]account, []string, error) {
	accts := newAccounts(cfg.users)
	// The check of every target first, so that a target that cannot be
	// used gives one clear error rather than a crowd of them.
	if _, err := ts.signIn(ctx, accts[0], true); err != nil {
		return nil, nil, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.clients)
	for i := 1; i < len(accts); i++ {
		g.Go(func() error {
			_, err := ts.at(i).register(gctx, accts[i])
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	tokens := make([]string, cfg.clients)
	g, gctx = errgroup.WithContext(ctx)
	for i := range tokens {
		g.Go(func() (err error) {
			tokens[i], err = ts.at(i).session(gctx, accts[i%len(accts)])
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	return accts, tokens, nil
}

// runChain has the clients chain refreshes, client i starting with tokens[i]
// as accts[i mod len(accts)], until the duration is over, the count is
// reached or ctx ends, and sums up the refreshes. Client i, which logged in
// at ts.at(i), sends its requests to ts.at(i+1), ts.at(i+2), and so on.
func runChain(ctx context.Context, ts targets, cfg chainConfig, accts []account, tokens []string, prog *progress) chainReport {
	var remaining atomic.Int64
	remaining.Store(int64(cfg.count))
	var deadline time.Time // set at the release, before any client reads it
	more := func() bool {
		if ctx.Err() != nil {
			return false
		}
		if cfg.count > 0 {
			return remaining.Add(-1) >= 0
		}
		return time.Now().Before(deadline)
	}

	workers := make([]*chainer, cfg.clients)
	for i := range workers {
		workers[i] = &chainer{ts: ts, next: i + 1, acct: accts[i%len(accts)], prog: prog,
			refreshes: newTallies(len(ts)), relogins: newTallies(len(ts)), latencies: make([][]time.Duration, len(ts))}
	}
	elapsed := barrier.Release(len(workers),
		func(released time.Time) { deadline = released.Add(cfg.duration) },
		func(i int) { workers[i].run(ctx, tokens[i], more) })

	refreshes, relogins := newTally(), newTally()
	var latencies []time.Duration
	rep := chainReport{Mode: "chain", URLs: ts.urls(), Users: cfg.users, Clients: cfg.clients, Instances: make([]chainInstanceReport, len(ts))}
	if len(ts) == 1 {
		rep.URL = ts[0].base
	}
	for i, c := range ts {
		tr, tl := newTally(), newTally()
		var tlat []time.Duration
		for _, w := range workers {
			tr.merge(w.refreshes[i])
			tl.merge(w.relogins[i])
			tlat = append(tlat, w.latencies[i]...)
		}
		refreshes.merge(tr)
		relogins.merge(tl)
		latencies = append(latencies, tlat...)
		rep.Instances[i] = chainInstanceReport{URL: c.base, tallyReport: tr.report(), LatencyMS: summarize(tlat), Relogins: tl.report()}
	}
	rep.tallyReport, rep.ElapsedMS, rep.LatencyMS = refreshes.report(), ms(elapsed), summarize(latencies)
	rep.Relogins, rep.Interrupted = relogins.report(), ctx.Err() != nil
	if cfg.count > 0 {
		rep.PlannedCount = cfg.count
	} else {
		rep.PlannedDurationMS = ms(cfg.duration)
	}
	if s := elapsed.Seconds(); s > 0 {
		rep.RefreshesPerSecond = float64(refreshes.requests) / s
	}
	return rep
}

// chainer is one client of a chain run. Only its goroutine touches it until
// run returns. Its tallies and latencies are per target, by index in ts.
type chainer struct {
	ts        targets
	next      int // the index, round-robin, of the target of the next request
	acct      account
	prog      *progress
	refreshes []*tally
	relogins  []*tally
	latencies [][]time.Duration
}

// target returns the index in ts of the target of the next request, and
// moves on to the one after.
func (w *chainer) target() int {
	i := w.next % len(w.ts)
	w.next = i + 1
	return i
}

// run refreshes token, then each successor, while more says so, each request
// at the next target. After a failed refresh it logs in again; when that
// fails too, it stops.
func (w *chainer) run(ctx context.Context, token string, more func() bool) {
	for more() {
		i := w.target()
		o := w.ts[i].refresh(ctx, token)
		if o.canceled {
			return
		}
		w.refreshes[i].add(o)
		w.latencies[i] = append(w.latencies[i], o.latency)
		w.prog.add(o.ok())
		if o.ok() {
			token = o.token
			continue
		}
		// The family may be gone (a reused token revokes it): start another.
		i = w.target()
		lo := w.ts[i].login(ctx, w.acct)
		if lo.canceled {
			return
		}
		w.relogins[i].add(lo)
		if !lo.ok() {
			return
		}
		token = lo.token
	}
}
