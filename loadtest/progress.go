package loadtest

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"
)

// progress shows how far a run is, on stderr: on a terminal, a bar redrawn in
// place a few times a second; elsewhere, when periodic, a plain line about
// once a second. Lines written with println go above the bar. Its methods are
// safe for concurrent use; stop it with finish.
type progress struct {
	w        io.Writer
	tty      bool
	total    int64         // requests planned; 0 when the run has a duration
	duration time.Duration // the planned duration, when total is 0

	done, failed atomic.Int64

	mu       sync.Mutex // guards w and what follows
	start    time.Time
	lastDone int64
	lastAt   time.Time

	quit     chan struct{}
	finished chan struct{}
}

// startProgress starts showing the progress of a run of total requests, or
// of duration when total is 0.
func startProgress(w io.Writer, total int64, duration time.Duration, periodic bool) *progress {
	now := time.Now()
	p := &progress{w: w, tty: isTerminal(w), total: total, duration: duration, start: now, lastAt: now,
		quit: make(chan struct{}), finished: make(chan struct{})}
	every := time.Second
	if p.tty {
		every = 200 * time.Millisecond
	} else if !periodic {
		close(p.finished)
		return p
	}
	go p.loop(every)
	return p
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

func (p *progress) loop(every time.Duration) {
	defer close(p.finished)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-p.quit:
			return
		case now := <-tick.C:
			p.mu.Lock()
			if p.tty {
				fmt.Fprint(p.w, "\r\033[K"+p.render(now))
			} else {
				fmt.Fprintln(p.w, "loadtest: "+p.render(now))
			}
			p.mu.Unlock()
		}
	}
}

// add counts one finished request.
func (p *progress) add(ok bool) {
	p.done.Add(1)
	if !ok {
		p.failed.Add(1)
	}
}

// println writes line, above the bar on a terminal.
func (p *progress) println(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K"+line+"\n"+p.render(time.Now()))
		return
	}
	fmt.Fprintln(p.w, line)
}

// finish stops the progress display. On a terminal the final bar stays,
// with the mean rate of the whole run. Call it once.
func (p *progress) finish() {
	close(p.quit)
	<-p.finished
	if p.tty {
		p.mu.Lock()
		p.lastDone, p.lastAt = 0, p.start
		fmt.Fprint(p.w, "\r\033[K"+p.render(time.Now())+"\n")
		p.mu.Unlock()
	}
}

// render returns the progress line: done/total or elapsed/duration, the rate
// since the last rendering, and the failures. p.mu must be held.
func (p *progress) render(now time.Time) string {
	done, failed := p.done.Load(), p.failed.Load()
	elapsed := now.Sub(p.start)
	rate := 0.0
	if dt := now.Sub(p.lastAt).Seconds(); dt > 0 {
		rate = float64(done-p.lastDone) / dt
	}
	p.lastDone, p.lastAt = done, now

	var frac float64
	var where string
	if p.total > 0 {
		frac = float64(done) / float64(p.total)
		where = fmt.Sprintf("%d/%d", done, p.total)
	} else {
		frac = elapsed.Seconds() / p.duration.Seconds()
		where = fmt.Sprintf("%s/%s, %d done", elapsed.Truncate(100*time.Millisecond), p.duration, done)
	}
	line := fmt.Sprintf("%s, %.0f/s, %d failed", where, rate, failed)
	if !p.tty {
		return line
	}
	const width = 30
	filled := min(max(int(frac*width), 0), width)
	return "[" + strings.Repeat("=", filled) + strings.Repeat(" ", width-filled) + "] " + line
}
