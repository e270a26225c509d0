package demo

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"
)

// WriteTable prints the report: one line per side, then the failures by
// message and what each side means for the callers.
func (r Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "%d rounds × %d concurrent refreshes of one fresh token, per server\n\n", r.Rounds, r.Concurrency)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "side\trequests\t200\t401\t500\tother\tsuccessors/round\tstored/round\tcallers kept a session\tround median\t")
	for _, s := range r.Sides {
		other := s.Requests - s.Statuses[200] - s.Statuses[401] - s.Statuses[500]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%d\t%s\t\n", s.Name, s.Requests, s.Statuses[200], s.Statuses[401], s.Statuses[500], other,
			spread(s.Successors), spread(s.Stored), s.Kept, s.Median().Round(100*time.Microsecond))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, s := range r.Sides {
		fmt.Fprintf(w, "%-8s %s\n", s.Name+":", s.description)
		msgs := make([]string, 0, len(s.Failures))
		for m := range s.Failures {
			msgs = append(msgs, m)
		}
		slices.Sort(msgs)
		for _, m := range msgs {
			fmt.Fprintf(w, "%9s%d × %s\n", "", s.Failures[m], m)
		}
	}
	_, err := fmt.Fprintf(w, "\nthe service committed %d rotations in %d storms (auth_refresh_total{result=\"rotated\"}): one transaction each\n",
		r.Side(Service).Rotations, r.Rounds)
	return err
}

// spread is "n" when every round counted n, else "min–max".
func spread(perRound []int) string {
	if len(perRound) == 0 {
		return "-"
	}
	lo, hi := slices.Min(perRound), slices.Max(perRound)
	if lo == hi {
		return strconv.Itoa(lo)
	}
	return fmt.Sprintf("%d–%d", lo, hi)
}
