package loadtest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// outcome is what one request came to.
type outcome struct {
	status   int    // HTTP status; 0 when no answer came
	message  string // why the request failed; "" on success
	token    string // the refresh token of a success
	latency  time.Duration
	err      error // the transport error, if any
	canceled bool  // the run was interrupted while the request was in flight
}

// ok reports whether the request succeeded: a 2xx answer with a refresh token.
func (o outcome) ok() bool { return o.message == "" }

// errorKey groups failures: one message, as one status gave it.
type errorKey struct {
	status  int
	message string
}

// tally counts the outcomes of requests. Use newTally; a tally is not safe
// for concurrent use.
type tally struct {
	requests, ok int
	statuses     map[int]int
	errors       map[errorKey]int
}

func newTally() *tally {
	return &tally{statuses: map[int]int{}, errors: map[errorKey]int{}}
}

// add counts o.
func (t *tally) add(o outcome) {
	t.requests++
	if o.status != 0 {
		t.statuses[o.status]++
	}
	if o.ok() {
		t.ok++
		return
	}
	t.errors[errorKey{o.status, o.message}]++
}

// merge adds the counts of u to t.
func (t *tally) merge(u *tally) {
	t.requests += u.requests
	t.ok += u.ok
	for s, n := range u.statuses {
		t.statuses[s] += n
	}
	for k, n := range u.errors {
		t.errors[k] += n
	}
}

// failed is the number of requests that did not succeed.
func (t *tally) failed() int { return t.requests - t.ok }

// errorCount is one group of failures.
type errorCount struct {
	Count   int    `json:"count"`
	Status  int    `json:"status"` // 0: no answer (a transport error)
	Message string `json:"message"`
}

// groupErrors returns the failure groups of errors, the largest first.
func groupErrors(errors map[errorKey]int) []errorCount {
	out := make([]errorCount, 0, len(errors))
	for k, n := range errors {
		out = append(out, errorCount{Count: n, Status: k.status, Message: k.message})
	}
	slices.SortFunc(out, func(a, b errorCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Status, b.Status), strings.Compare(a.Message, b.Message))
	})
	return out
}

// tallyReport is a tally as the reports show it.
type tallyReport struct {
	Requests int          `json:"requests"`
	OK       int          `json:"ok"`
	Failed   int          `json:"failed"`
	Statuses map[int]int  `json:"statuses"`
	Errors   []errorCount `json:"errors"`
}

func (t *tally) report() tallyReport {
	return tallyReport{Requests: t.requests, OK: t.ok, Failed: t.failed(), Statuses: t.statuses, Errors: groupErrors(t.errors)}
}

// percentile returns the p-th percentile (0 < p ≤ 100) of sorted samples by
// the nearest-rank method: the smallest sample that at least p percent of the
// samples do not exceed. It returns 0 when there are no samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p * float64(len(sorted)) / 100))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// latencyReport sums up latencies, in milliseconds.
type latencyReport struct {
	Samples int     `json:"samples"`
	Mean    float64 `json:"mean"`
	P50     float64 `json:"p50"`
	P90     float64 `json:"p90"`
	P99     float64 `json:"p99"`
	Max     float64 `json:"max"`
}

// summarize sorts samples in place and sums them up.
func summarize(samples []time.Duration) latencyReport {
	slices.Sort(samples)
	r := latencyReport{Samples: len(samples)}
	if len(samples) == 0 {
		return r
	}
	var sum time.Duration
	for _, d := range samples {
		sum += d
	}
	r.Mean = ms(sum / time.Duration(len(samples)))
	r.P50 = ms(percentile(samples, 50))
	r.P90 = ms(percentile(samples, 90))
	r.P99 = ms(percentile(samples, 99))
	r.Max = ms(samples[len(samples)-1])
	return r
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// fmtMS formats milliseconds for a table.
func fmtMS(v float64) string {
	if v >= 1000 {
		return strconv.FormatFloat(v/1000, 'f', 2, 64) + "s"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + "ms"
}

// fmtStatuses formats status counts as "200×199 401×1".
func fmtStatuses(statuses map[int]int) string {
	if len(statuses) == 0 {
		return "-"
	}
	keys := slices.Sorted(maps.Keys(statuses))
	parts := make([]string, len(keys))
	for i, s := range keys {
		parts[i] = fmt.Sprintf("%d×%d", s, statuses[s])
	}
	return strings.Join(parts, " ")
}

// writeJSON writes v as one indented JSON object.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeErrors writes the failure groups as a table, if there are any.
func writeErrors(tw *tabwriter.Writer, title string, errs []errorCount) {
	if len(errs) == 0 {
		return
	}
	fmt.Fprintf(tw, "\n%s\tcount\tstatus\tmessage\n", title)
	for _, e := range errs {
		status := strconv.Itoa(e.Status)
		if e.Status == 0 {
			status = "-"
		}
		fmt.Fprintf(tw, "\t%d\t%s\t%s\n", e.Count, status, e.Message)
	}
}

// against names the targets of a run: the URL of the only one, or how many
// there are (the table of instances names them).
func against(urls []string) string {
	if len(urls) == 1 {
		return urls[0]
	}
	return fmt.Sprintf("%d instances", len(urls))
}

// writeInstanceErrors writes the failure groups of each instance that has
// any, when there are several.
func writeInstanceErrors(tw *tabwriter.Writer, title string, urls []string, errs func(i int) []errorCount) {
	if len(urls) < 2 {
		return
	}
	for i, u := range urls {
		writeErrors(tw, title+" at "+u, errs(i))
	}
}

// writeStormTable writes the summary of a storm as a table. With several
// targets, a table of instances follows the rounds.
func writeStormTable(w io.Writer, r stormReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "storm of %d concurrent refreshes of one token against %s", r.Concurrency, against(r.URLs))
	if r.Interrupted {
		fmt.Fprint(tw, " (interrupted)")
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "round\trequests\tok\tfailed\tsuccessors\ttime\tstatuses\ttoken")
	for _, rr := range r.Rounds {
		from := "successor"
		if rr.FreshLogin {
			from = "fresh"
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n",
			rr.Round, rr.Requests, rr.OK, rr.Failed, rr.Successors, fmtMS(rr.DurationMS), fmtStatuses(rr.Statuses), from)
	}
	t := r.Total
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t%s\t%s\t%d/%d rounds with one successor\n",
		t.Requests, t.OK, t.Failed, t.Successors, fmtMS(t.DurationMS), fmtStatuses(t.Statuses), t.RoundsWithOneSuccessor, len(r.Rounds))
	if len(r.Instances) > 1 {
		fmt.Fprintln(tw, "\ninstance\trequests\tok\tfailed\tstatuses")
		for _, in := range r.Instances {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", in.URL, in.Requests, in.OK, in.Failed, fmtStatuses(in.Statuses))
		}
	}
	writeErrors(tw, "errors", t.Errors)
	writeInstanceErrors(tw, "errors", r.URLs, func(i int) []errorCount { return r.Instances[i].Errors })
	return tw.Flush()
}

// writeChainTable writes the summary of a chain run as a table. With several
// targets, a table of instances follows the totals.
func writeChainTable(w io.Writer, r chainReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "chain: %d clients over %d users against %s", r.Clients, r.Users, against(r.URLs))
	if r.Interrupted {
		fmt.Fprint(tw, " (interrupted)")
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "refreshes\t%d\t(%d ok, %d failed)\n", r.Requests, r.OK, r.Failed)
	fmt.Fprintf(tw, "elapsed\t%s\n", fmtMS(r.ElapsedMS))
	fmt.Fprintf(tw, "rate\t%.1f/s\n", r.RefreshesPerSecond)
	l := r.LatencyMS
	fmt.Fprintf(tw, "latency\tmean %s\tp50 %s\tp90 %s\tp99 %s\tmax %s\n", fmtMS(l.Mean), fmtMS(l.P50), fmtMS(l.P90), fmtMS(l.P99), fmtMS(l.Max))
	fmt.Fprintf(tw, "statuses\t%s\n", fmtStatuses(r.Statuses))
	fmt.Fprintf(tw, "logins again\t%d\t(%d failed)\n", r.Relogins.Requests, r.Relogins.Failed)
	if len(r.Instances) > 1 {
		fmt.Fprintln(tw, "\ninstance\trefreshes\tok\tfailed\tp50\tp99\tstatuses\tlogins again")
		for _, in := range r.Instances {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\t%d (%d failed)\n", in.URL, in.Requests, in.OK, in.Failed,
				fmtMS(in.LatencyMS.P50), fmtMS(in.LatencyMS.P99), fmtStatuses(in.Statuses), in.Relogins.Requests, in.Relogins.Failed)
		}
	}
	writeErrors(tw, "errors", r.Errors)
	writeErrors(tw, "login errors", r.Relogins.Errors)
	writeInstanceErrors(tw, "errors", r.URLs, func(i int) []errorCount { return r.Instances[i].Errors })
	writeInstanceErrors(tw, "login errors", r.URLs, func(i int) []errorCount { return r.Instances[i].Relogins.Errors })
	return tw.Flush()
}
