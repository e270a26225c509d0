package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tokenrelay/authsvc/internal/barrier"
)

const stormUsage = `usage: loadtest storm [flags]

Registers a user with a random email (or logs in with --email and --password),
then runs --rounds rounds; each fires -n refreshes of one refresh token at once.
A server without the race answers every one 200 with the same successor, which
the next round refreshes; otherwise the next round logs in again. Exit status 1
when any refresh failed or a round returned more than one successor.

With several --url, the user registers at the first and logs in at each other
one (an instance that does not know the user does not share the database:
exit status 2), and the -n refreshes of each round go round-robin over the
instances; the summary shows each instance's requests and statuses.

flags:
`

// stormConfig is the configuration of a storm.
type stormConfig struct {
	commonFlags
	n, rounds       int
	email, password string
}

func (cfg *stormConfig) check() error {
	if err := cfg.commonFlags.check(); err != nil {
		return err
	}
	switch {
	case cfg.n < 1:
		return fmt.Errorf("-n %d: want at least 1", cfg.n)
	case cfg.rounds < 1:
		return fmt.Errorf("--rounds %d: want at least 1", cfg.rounds)
	case (cfg.email == "") != (cfg.password == ""):
		return errors.New("--email and --password go together")
	}
	return nil
}

// stormReport is the summary of a storm.
type stormReport struct {
	Mode          string           `json:"mode"`          // "storm"
	URL           string           `json:"url,omitempty"` // the target, when there is one
	URLs          []string         `json:"urls"`          // the targets, in --url order
	Concurrency   int              `json:"concurrency"`
	RoundsPlanned int              `json:"roundsPlanned"`
	Rounds        []roundReport    `json:"rounds"`
	Total         stormTotal       `json:"total"`
	Instances     []instanceReport `json:"instances"` // the refreshes of each target, over all rounds
	Interrupted   bool             `json:"interrupted"`
}

// roundReport is the summary of one round.
type roundReport struct {
	Round int `json:"round"`
	tallyReport
	Successors int     `json:"successors"` // distinct refresh tokens returned
	DurationMS float64 `json:"durationMs"` // from the release to the last answer
	FreshLogin bool    `json:"freshLogin"` // the token came from a login, not from the round before
}

// stormTotal sums up the rounds.
type stormTotal struct {
	tallyReport
	Successors             int     `json:"successors"`
	RoundsWithOneSuccessor int     `json:"roundsWithOneSuccessor"`
	DurationMS             float64 `json:"durationMs"`
}

// failed reports whether any refresh failed or any round returned more than
// one successor: both break the first rule of docs/API.md, "Refresh semantics".
func (r stormReport) failed() bool {
	for _, rr := range r.Rounds {
		if rr.Successors > 1 {
			return true
		}
	}
	return r.Total.Failed > 0
}

// storm runs the storm mode.
func storm(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cfg stormConfig
	fs := newFlagSet("storm", stormUsage, stderr)
	cfg.commonFlags.register(fs)
	fs.IntVar(&cfg.n, "n", 200, "concurrent refreshes of one token per round")
	fs.IntVar(&cfg.rounds, "rounds", 5, "number of rounds")
	fs.StringVar(&cfg.email, "email", "", "log in as this user instead of registering a fresh one (with --password)")
	fs.StringVar(&cfg.password, "password", "", "the password of --email")
	if code := parse(fs, args, stderr, cfg.check); code >= 0 {
		return code
	}

	ts := newTargets(cfg.urls.urls, (cfg.n+len(cfg.urls.urls)-1)/len(cfg.urls.urls), cfg.timeout)
	defer ts.close()
	acct := account{email: cfg.email, password: cfg.password}
	register := acct.email == ""
	if register {
		acct = newAccounts(1)[0]
	}
	token, err := ts.signIn(ctx, acct, register)
	if err != nil {
		return setupFailed(ctx, stderr, err)
	}

	prog := startProgress(stderr, int64(cfg.n*cfg.rounds), 0, false)
	rep, err := runStorm(ctx, ts, cfg, acct, token, prog)
	prog.finish()
	if err != nil {
		fmt.Fprintln(stderr, "loadtest:", err)
	}
	return finish(stdout, stderr, cfg.json, rep, func(w io.Writer) error { return writeStormTable(w, rep) }, err != nil || rep.failed())
}

// runStorm runs the rounds of a storm, starting with token of acct. It
// returns the summary of the rounds done, and an error when a login that a
// round needed failed. The refreshes go round-robin over ts, and so do the
// logins of the rounds that need one.
func runStorm(ctx context.Context, ts targets, cfg stormConfig, acct account, token string, prog *progress) (stormReport, error) {
	rep := stormReport{Mode: "storm", URLs: ts.urls(), Concurrency: cfg.n, RoundsPlanned: cfg.rounds, Rounds: []roundReport{}}
	if len(ts) == 1 {
		rep.URL = ts[0].base
	}
	total, perTarget := newTally(), newTallies(len(ts))
	fresh := true
	var err error
	for r := 1; r <= cfg.rounds && ctx.Err() == nil; r++ {
		if token == "" {
			if token, err = ts.at(r).session(ctx, acct); err != nil {
				if ctx.Err() != nil {
					err = nil
				} else {
					err = fmt.Errorf("round %d: log in again: %w", r, err)
				}
				break
			}
			fresh = true
		}
		ts.warm(ctx, cfg.n)
		t, per, successors, elapsed := stormRound(ctx, ts, (r-1)*cfg.n, cfg.n, token, prog)
		if t.requests == 0 {
			break // interrupted before any answer
		}
		total.merge(t)
		for i, pt := range per {
			perTarget[i].merge(pt)
		}
		rr := roundReport{Round: r, tallyReport: t.report(), Successors: len(successors), DurationMS: ms(elapsed), FreshLogin: fresh}
		rep.Rounds = append(rep.Rounds, rr)
		rep.Total.Successors += rr.Successors
		rep.Total.DurationMS += rr.DurationMS
		if rr.Successors == 1 {
			rep.Total.RoundsWithOneSuccessor++
		}
		prog.println(fmt.Sprintf("round %d/%d: %d requests, %d ok, %d failed, successors %d, %s, statuses %s",
			r, cfg.rounds, rr.Requests, rr.OK, rr.Failed, rr.Successors, fmtMS(rr.DurationMS), fmtStatuses(rr.Statuses)))

		// The next round refreshes the successor, when the server agreed on one.
		token, fresh = "", false
		if len(successors) == 1 {
			for s := range successors {
				token = s
			}
		}
	}
	rep.Total.tallyReport = total.report()
	rep.Instances = ts.instanceReports(perTarget)
	rep.Interrupted = ctx.Err() != nil
	return rep, err
}

// stormRound fires n refreshes of token at once, request i of the round at
// ts.at(first+i), all released together (barrier.Release). It returns their tally (without the requests the end of ctx
// cut short), the tally of each target, the distinct successors returned, and
// the time from the release to the last answer.
func stormRound(ctx context.Context, ts targets, first, n int, token string, prog *progress) (*tally, []*tally, map[string]bool, time.Duration) {
	outcomes := make([]outcome, n)
	elapsed := barrier.Release(n, nil, func(i int) {
		o := ts.at(first+i).refresh(ctx, token)
		if !o.canceled {
			prog.add(o.ok())
		}
		outcomes[i] = o
	})

	t, per := newTally(), newTallies(len(ts))
	successors := map[string]bool{}
	for i, o := range outcomes {
		if o.canceled {
			continue
		}
		t.add(o)
		per[(first+i)%len(ts)].add(o)
		if o.ok() {
			successors[o.token] = true
		}
	}
	return t, per, successors, elapsed
}
