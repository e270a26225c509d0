package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// answer is an HTTP answer of an instance, read whole.
type answer struct {
	status int
	body   []byte
}

// post sends body as JSON to path on the instance.
func (in *instance) post(ctx context.Context, path string, body any) (answer, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return answer{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.url+path, bytes.NewReader(b))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := in.client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err = io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	return answer{status: resp.StatusCode, body: b}, nil
}

// describe names a request and its answer for a failure message, without
// the tokens it carried.
func describe(in *instance, path string, a answer) string {
	body := string(a.body)
	if len(body) > 200 {
		body = body[:200] + "..."
	}
	return fmt.Sprintf("POST %s on %s: %d %s", path, in.name, a.status, body)
}

// tokens is the token pair of a register, login or refresh answer.
type tokens struct {
	AccessToken  string `json:"accessToken"`
	RefreshToken string `json:"refreshToken"`
}

// call posts body to path and returns the tokens of an answer with status
// want; any other answer is an error.
func (in *instance) call(ctx context.Context, path string, body any, want int) (tokens, error) {
	a, err := in.post(ctx, path, body)
	if err != nil {
		return tokens{}, fmt.Errorf("POST %s on %s: %w", path, in.name, err)
	}
	if a.status != want {
		return tokens{}, fmt.Errorf("%s, want %d", describe(in, path, a), want)
	}
	return a.tokens()
}

func (a answer) tokens() (tokens, error) {
	var tk tokens
	if err := json.Unmarshal(a.body, &tk); err != nil || tk.AccessToken == "" || tk.RefreshToken == "" {
		return tokens{}, fmt.Errorf("answer %q holds no token pair (%v)", a.body, err)
	}
	return tk, nil
}

const password = "correct horse battery staple"

func (in *instance) register(ctx context.Context, email string) (tokens, error) {
	return in.call(ctx, "/auth/register", map[string]string{"email": email, "password": password}, http.StatusCreated)
}

func (in *instance) login(ctx context.Context, email string) (tokens, error) {
	return in.call(ctx, "/auth/login", map[string]string{"email": email, "password": password}, http.StatusOK)
}

func (in *instance) refresh(ctx context.Context, refreshToken string) (tokens, error) {
	return in.call(ctx, "/auth/refresh", map[string]string{"refreshToken": refreshToken}, http.StatusOK)
}

// fingerprint names a token in test output without giving it away.
func fingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:4])
}

// successors records, for every refresh answered 200 by any instance, the
// token the presented one rotated to: a token has one successor, however
// often and wherever it is presented.
type successors struct {
	mu   sync.Mutex
	next map[string]string
}

// record notes that presented rotated to successor, and returns the other
// successor recorded before, if any.
func (s *successors) record(presented, successor string) (earlier string, conflict bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next == nil {
		s.next = map[string]string{}
	}
	if prev, ok := s.next[presented]; ok {
		return prev, prev != successor
	}
	s.next[presented] = successor
	return "", false
}

// violations collects broken invariants from any goroutine: a count per
// kind, and the first few in full.
type violations struct {
	mu       sync.Mutex
	total    int
	byKind   map[string]int
	examples []string
}

const maxExamples = 25

func (v *violations) add(kind, detail string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.byKind == nil {
		v.byKind = map[string]int{}
	}
	v.total++
	v.byKind[kind]++
	if len(v.examples) < maxExamples {
		v.examples = append(v.examples, detail)
	}
}

func (v *violations) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.total
}

// String lists the counts by kind, then the first violations in full.
func (v *violations) String() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "%d violations:\n", v.total)
	for _, k := range slices.Sorted(maps.Keys(v.byKind)) {
		fmt.Fprintf(&b, "  %6d  %s\n", v.byKind[k], k)
	}
	fmt.Fprintf(&b, "first %d:\n", len(v.examples))
	for _, e := range v.examples {
		fmt.Fprintf(&b, "  %s\n", e)
	}
	return b.String()
}

// roundStats counts what the clients saw during one round.
type roundStats struct {
	mu        sync.Mutex
	requests  int
	statuses  map[int]int
	lost      int          // connection errors to the killed process
	okClients map[int]bool // clients with at least one refresh answered 200
}

func newRoundStats() *roundStats {
	return &roundStats{statuses: map[int]int{}, okClients: map[int]bool{}}
}

// book counts one request of client: its status, or lost when it failed
// with the killed process.
func (r *roundStats) book(client, status int, lost bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	switch {
	case lost:
		r.lost++
	case status != 0:
		r.statuses[status]++
	}
	if status == http.StatusOK {
		r.okClients[client] = true
	}
}

func (r *roundStats) String(elapsed time.Duration, clients int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var statuses []string
	for _, s := range slices.Sorted(maps.Keys(r.statuses)) {
		statuses = append(statuses, fmt.Sprintf("%d×%d", r.statuses[s], s))
	}
	return fmt.Sprintf("%d requests in %v, statuses [%s], %d connection errors to the killed process, %.0f refreshes/s, %d/%d clients OK",
		r.requests, elapsed.Round(10*time.Millisecond), strings.Join(statuses, " "), r.lost,
		float64(r.statuses[http.StatusOK])/elapsed.Seconds(), len(r.okClients), clients)
}

// loadClient is one user chaining refreshes: each presents the token the
// last one returned, to the next instance in turn.
type loadClient struct {
	id    int
	token string // the refresh token it holds
	next  int    // index of the instance its next request goes to
	dead  bool   // its token was refused: it cannot go on
}

// load drives clients against a cluster's instances and books every answer.
type load struct {
	instances  []*instance
	clients    []*loadClient
	chain      successors
	violations violations
	stats      atomic.Pointer[roundStats] // the round under way
}

// newLoad registers n users, spread over the instances, one client each.
func newLoad(t *testing.T, instances []*instance, n int) *load {
	t.Helper()
	l := &load{instances: instances}
	l.stats.Store(newRoundStats())
	errs := make(chan error, n)
	l.clients = make([]*loadClient, n)
	prefix := strings.ToLower(fingerprint(t.Name() + time.Now().String()))
	for i := range n {
		go func() {
			in := instances[i%len(instances)]
			tk, err := in.register(t.Context(), fmt.Sprintf("client%d-%s@example.com", i, prefix))
			l.clients[i] = &loadClient{id: i, token: tk.RefreshToken, next: (i + 1) % len(instances)}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("register: %v", err)
		}
	}
	return l
}

// outcome is what one refresh of a client came to.
type outcome int

const (
	rotated outcome = iota // 200: the client holds the successor
	lost                   // the instance was killed: retry the same token elsewhere
	refused                // anything else, a violation
)

// step presents c's token once to the next instance in turn and books the
// outcome under phase. Only c's goroutine may step c.
func (l *load) step(ctx context.Context, c *loadClient, phase string) outcome {
	const path = "/auth/refresh"
	in := l.instances[c.next%len(l.instances)]
	c.next++
	kills := in.kills.Load()
	a, err := in.post(ctx, path, map[string]string{"refreshToken": c.token})
	stats := l.stats.Load()
	switch {
	case err != nil && in.lostTo(kills):
		stats.book(c.id, 0, true)
		return lost
	case err != nil:
		stats.book(c.id, 0, false)
		l.violations.add(fmt.Sprintf("%s: POST %s on %s (running): connection error", phase, path, in.name),
			fmt.Sprintf("%s: client %d: POST %s on %s (running): %v", phase, c.id, path, in.name, err))
		return refused
	}
	stats.book(c.id, a.status, false)
	if a.status != http.StatusOK {
		if a.status < 500 {
			c.dead = true
		}
		l.violations.add(fmt.Sprintf("%s: POST %s on %s: %d", phase, path, in.name, a.status),
			fmt.Sprintf("%s: client %d: %s", phase, c.id, describe(in, path, a)))
		return refused
	}
	tk, err := a.tokens()
	if err != nil {
		l.violations.add(phase+": refresh answer without tokens", fmt.Sprintf("%s: client %d on %s: %v", phase, c.id, in.name, err))
		return refused
	}
	if earlier, conflict := l.chain.record(c.token, tk.RefreshToken); conflict {
		l.violations.add(phase+": token with two successors",
			fmt.Sprintf("%s: client %d: token %s rotated to %s, then to %s on %s", phase, c.id,
				fingerprint(c.token), fingerprint(earlier), fingerprint(tk.RefreshToken), in.name))
	}
	c.token = tk.RefreshToken
	return rotated
}

// retryPause is how long a client waits after a refused refresh before it
// tries the same token on the next instance.
const retryPause = 50 * time.Millisecond

// run keeps every client refreshing until stop is closed, then waits for
// the requests in flight. A lost request is retried at once on the next
// instance with the same token, as a client that lost a response would; a
// refused one after retryPause, unless the token is dead.
func (l *load) run(ctx context.Context, phase string, stop <-chan struct{}) {
	var wg sync.WaitGroup
	for _, c := range l.clients {
		if c.dead {
			continue
		}
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if l.step(ctx, c, phase) != refused {
					continue
				}
				if c.dead {
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(retryPause):
				}
			}
		})
	}
	wg.Wait()
}

// check refreshes every client's token once more, all at once, and returns
// how many answered 200: each client must still hold a working token.
func (l *load) check(ctx context.Context, phase string) int {
	var ok atomic.Int64
	var wg sync.WaitGroup
	for _, c := range l.clients {
		wg.Go(func() {
			if l.step(ctx, c, phase) == rotated {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	return int(ok.Load())
}

// fault injects one failure while the load runs and returns when its round
// should end, with a description of what it did.
type fault func() (string, error)

// round runs the load while inject does its fault, then stops the clients
// and returns the round's figures and inject's description.
func (l *load) round(ctx context.Context, phase string, inject fault) (figures, what string, err error) {
	stats := newRoundStats()
	l.stats.Store(stats)
	stop := make(chan struct{})
	done := make(chan struct{})
	start := time.Now()
	go func() { l.run(ctx, phase, stop); close(done) }()
	what, err = inject()
	close(stop)
	<-done
	return stats.String(time.Since(start), len(l.clients)), what, err
}
