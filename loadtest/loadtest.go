// Package loadtest is the load tool of `authsvc loadtest`: scenarios that any
// server speaking the authsvc HTTP contract (docs/API.md) can be pointed
// at, one instance or several behind one database.
//
// storm fires many concurrent refreshes of one refresh token, round after
// round: a server without the race (README.md, "The race, and how this
// service prevents it") answers them all 200 with one successor. chain has
// many clients chain refreshes of their own token families, for throughput
// and latency. Given several --url, both spread their requests round-robin
// over the instances and report each instance apart.
package loadtest

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
)

// Exit statuses of Main.
const (
	exitOK       = 0 // every refresh succeeded
	exitFailed   = 1 // some request failed, or the run was interrupted before it did anything
	exitUnusable = 2 // a usage error, or a target that cannot be used
)

const usage = `usage: loadtest <mode> [flags]

Load scenarios against a server that speaks the authsvc HTTP contract
(docs/API.md in the authsvc repository), or against several instances of it
that share one database: repeat --url, and the requests go round-robin over
the instances.

modes:
  storm   rounds of N concurrent refreshes of one token: all must get 200 and one successor
  chain   C clients chain refreshes of their own token families: throughput and latency

Before a run, every --url is checked with a registration or a login, each
bounded by --timeout. Run "loadtest <mode> -h" for the flags of a mode.

Exit status: 0 when every refresh got a 2xx answer with a refresh token, 1
when any failed, 2 for a usage error or a target that cannot be used (one
that is unreachable, does not answer within --timeout, or does not speak the
contract).
`

// Main runs the load tool with the arguments after "loadtest" and returns the
// process exit status: 0 when every request succeeded, 1 when any failed, 2
// for a usage error or a target that cannot be used. The summary goes to
// stdout, progress and errors to stderr. When ctx ends, Main stops early and
// still writes the summary of what was done.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUnusable
	}
	switch args[0] {
	case "storm":
		return storm(ctx, args[1:], stdout, stderr)
	case "chain":
		return chain(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stderr, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "loadtest: unknown mode %q\n\n%s", args[0], usage)
	return exitUnusable
}

// defaultURL is the target when no --url is given: the service's own default.
const defaultURL = "http://127.0.0.1:3000"

// commonFlags are the flags every mode has.
type commonFlags struct {
	urls    urlList
	json    bool
	timeout time.Duration
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	c.urls = urlList{urls: []string{defaultURL}}
	fs.Var(&c.urls, "url", "base `URL` of the server; repeat it for several instances over one database,\n"+
		"and the requests go round-robin over them")
	fs.BoolVar(&c.json, "json", false, "write the summary to stdout as one JSON object instead of a table")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "longest wait for one answer, the check of each --url before the run included")
}

// check validates the flags and normalizes the URLs.
func (c *commonFlags) check() error {
	seen := make(map[string]bool, len(c.urls.urls))
	for i, raw := range c.urls.urls {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--url %q: want an http:// or https:// URL", raw)
		}
		norm := strings.TrimSuffix(raw, "/")
		if seen[norm] {
			return fmt.Errorf("--url %q: given twice", raw)
		}
		seen[norm] = true
		c.urls.urls[i] = norm
	}
	if c.timeout <= 0 {
		return fmt.Errorf("--timeout %s: want a positive duration", c.timeout)
	}
	return nil
}

// urlList is the value of the repeatable --url flag. The first --url
// replaces the default.
type urlList struct {
	urls []string
	set  bool // a --url was given
}

// String returns the URLs separated by spaces.
func (l *urlList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(l.urls, " ")
}

// Set adds one URL.
func (l *urlList) Set(s string) error {
	if !l.set {
		l.urls, l.set = nil, true
	}
	l.urls = append(l.urls, s)
	return nil
}

// parse parses args into fs, then runs check. It returns the exit status to
// stop with, or -1 to go on.
func parse(fs *flag.FlagSet, args []string, stderr io.Writer, check func() error) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUnusable // fs printed the error and the usage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loadtest: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return exitUnusable
	}
	if err := check(); err != nil {
		fmt.Fprintln(stderr, "loadtest:", err)
		return exitUnusable
	}
	return -1
}

// newFlagSet returns a flag set for mode whose usage is head and the flags.
func newFlagSet(mode, head string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("loadtest "+mode, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, head)
		fs.PrintDefaults()
	}
	return fs
}

// account is a user's credentials.
type account struct {
	email, password string
}

// newAccounts returns n accounts with fresh random emails and passwords.
func newAccounts(n int) []account {
	run := strings.ToLower(rand.Text()[:10])
	accts := make([]account, n)
	for i := range accts {
		accts[i] = account{email: fmt.Sprintf("loadtest-%s-%d@example.com", run, i), password: rand.Text()}
	}
	return accts
}

// setupFailed writes the error that stopped a run before it began and
// returns the exit status. Only the end of ctx is an interruption: a request
// that timed out is a target that cannot be used.
func setupFailed(ctx context.Context, stderr io.Writer, err error) int {
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "loadtest: interrupted before the run began")
		return exitFailed
	}
	fmt.Fprintln(stderr, "loadtest:", err)
	return exitUnusable
}

// finish writes the summary, as a table or JSON, and returns the exit status:
// exitFailed when failed, or when the summary cannot be written.
func finish(stdout, stderr io.Writer, asJSON bool, rep any, table func(io.Writer) error, failed bool) int {
	var err error
	if asJSON {
		err = writeJSON(stdout, rep)
	} else {
		err = table(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadtest: write the summary:", err)
		return exitFailed
	}
	if failed {
		return exitFailed
	}
	return exitOK
}
