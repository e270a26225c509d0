package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	readyTimeout = 30 * time.Second       // a process must be ready this soon after it starts
	pollEvery    = 25 * time.Millisecond  // how often readiness is polled
	logTail      = 40                     // lines of a process's log shown when a test fails
	pingTimeout  = 500 * time.Millisecond // one readiness probe
)

// proc is a child process in a process group of its own, its output appended
// to a log file.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process is reaped
	err    error         // cmd.Wait's result, set before exited closes
}

// startProc starts argv with env (nil: this process's), appending its output
// to logPath. It dies with ctx.
func startProc(ctx context.Context, logPath string, env []string, argv ...string) (*proc, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close() // the child has its own descriptor
	fmt.Fprintf(log, "=== start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(argv[0]), err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	return p, nil
}

// kill SIGKILLs p's process group and waits until p is reaped.
func (p *proc) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

// waitReady calls ready until it succeeds, p exits or readyTimeout passes.
func (p *proc) waitReady(ready func(context.Context) error) error {
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
		err := ready(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", readyTimeout, err)
		}
		select {
		case <-p.exited:
			return fmt.Errorf("exited before it was ready (%v)", p.err)
		case <-tick.C:
		}
	}
}

// server is a process the test starts, kills and restarts on the same port:
// a service instance or the test's redis-server.
type server struct {
	name string
	port int
	log  string
	argv []string
	env  []string
	// ready probes the running server.
	ready func(context.Context) error

	mu sync.Mutex
	p  *proc // nil until started

	down  atomic.Bool  // killed and not ready again yet
	kills atomic.Int64 // how many times it was killed
}

// newServer defines a server on a free port; argv and env may use the port.
// It is killed, and its log tail shown if the test failed, when t ends.
func newServer(t *testing.T, name string, spec func(port int) (argv, env []string)) *server {
	t.Helper()
	s := &server{name: name, port: freePort(t), log: filepath.Join(t.TempDir(), name+".log")}
	s.argv, s.env = spec(s.port)
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("%s log, last %d lines (%s):\n%s", name, logTail, s.log, tail(s.log, logTail))
		}
	})
	return s
}

// start starts the server and waits until it is ready. It is an error to
// start a server that runs.
func (s *server) start(ctx context.Context) error {
	s.mu.Lock()
	if s.p != nil {
		s.mu.Unlock()
		return fmt.Errorf("%s: already running", s.name)
	}
	p, err := startProc(ctx, s.log, s.env, s.argv...)
	s.p = p
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	if err := p.waitReady(s.ready); err != nil {
		return fmt.Errorf("%s: %w (its log follows the test)", s.name, err)
	}
	s.down.Store(false)
	return nil
}

// kill SIGKILLs the server's process group: no shutdown, as in a crash. The
// server is down until start brings it back.
func (s *server) kill() {
	s.down.Store(true)
	s.kills.Add(1)
	s.stop()
}

func (s *server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p != nil {
		s.p.kill()
		s.p = nil
	}
}

// lostTo reports whether a request sent when the server had been killed
// killsBefore times failed because the server was killed meanwhile or is down.
func (s *server) lostTo(killsBefore int64) bool {
	return s.down.Load() || s.kills.Load() != killsBefore
}

// freePort returns a TCP port nothing listens on at the moment.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// redisServer is a redis-server of the test's own, without persistence, so
// that killing it loses every lock.
type redisServer struct {
	*server
	client *redis.Client // the test's own connection
}

// startRedis starts a redis-server for t, stopped when t ends.
func startRedis(t *testing.T) *redisServer {
	t.Helper()
	dir := t.TempDir()
	s := newServer(t, "redis", func(port int) ([]string, []string) {
		return []string{redisServerPath, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir}, nil
	})
	r := &redisServer{server: s, client: redis.NewClient(&redis.Options{Addr: loopback(s.port), MaxRetries: -1})}
	t.Cleanup(func() { r.client.Close() })
	s.ready = func(ctx context.Context) error { return r.client.Ping(ctx).Err() }
	if err := s.start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return r
}

// loopback is the address of port on 127.0.0.1.
func loopback(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// url is the REDIS_URL of the server.
func (r *redisServer) url() string { return "redis://" + loopback(r.port) + "/0" }

// instance is one process of the service.
type instance struct {
	*server
	url    string
	client *http.Client // its own connection pool, which dies with the process
}

// newInstance defines an instance with env (PORT is added); start runs it.
func newInstance(t *testing.T, name string, env []string) *instance {
	t.Helper()
	in := &instance{}
	in.server = newServer(t, name, func(port int) ([]string, []string) {
		return []string{servicePath}, append([]string{"PORT=" + strconv.Itoa(port)}, env...)
	})
	in.url = "http://" + loopback(in.port)
	in.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 15 * time.Second}
	t.Cleanup(in.client.CloseIdleConnections)
	in.ready = in.healthy
	return in
}

// healthy checks that GET /health answers 200: database and Redis up.
func (in *instance) healthy(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.url+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := in.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /health: %d", resp.StatusCode)
	}
	return nil
}

// kill kills the instance and forgets its connections, dead with it.
func (in *instance) kill() {
	in.server.kill()
	in.client.CloseIdleConnections()
}

// cluster is one test's deployment: a fresh PostgreSQL database and a
// redis-server of its own, shared by service instances A, B, C, ...
type cluster struct {
	redis     *redisServer
	instances []*instance
}

// newCluster sets up the database and Redis of a cluster of n instances and
// defines the instances; start or startTogether runs them.
func newCluster(t *testing.T, n int) *cluster {
	t.Helper()
	dbURL := freshDatabase(t, requirePrereqs(t))
	c := &cluster{redis: startRedis(t)}
	secret := make([]byte, 48)
	rand.Read(secret)
	env := []string{
		"DATABASE_URL=" + dbURL,
		"REDIS_URL=" + c.redis.url(),
		"JWT_SECRET=" + hex.EncodeToString(secret),
		"LOG_FORMAT=json",
		"LOG_LEVEL=warn",
		"THROTTLE=off",            // the clients all log in from 127.0.0.1
		"BCRYPT_QUEUE_TIMEOUT=1m", // and at once, on instances sharing two cores
		// 3 × 10 connections: go test runs other packages' PostgreSQL tests
		// beside this one, on a server that allows 100 in all.
		"DB_MAX_CONNS=10",
	}
	for i := range n {
		c.instances = append(c.instances, newInstance(t, string(rune('A'+i)), env))
	}
	return c
}

// start starts the instances one after the other, each healthy before the next.
func (c *cluster) start(t *testing.T) {
	t.Helper()
	for _, in := range c.instances {
		if err := in.start(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}

// startTogether starts every instance at the same instant and waits until
// all are healthy; it fails the test naming each one that is not.
func (c *cluster) startTogether(t *testing.T) {
	t.Helper()
	barrier := make(chan struct{})
	errs := make(chan error, len(c.instances))
	for _, in := range c.instances {
		go func() {
			<-barrier
			errs <- in.start(t.Context())
		}()
	}
	close(barrier)
	var failed []error
	for range c.instances {
		if err := <-errs; err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		t.Fatalf("%d of %d instances started together did not come up:\n%v", len(failed), len(c.instances), errors.Join(failed...))
	}
}
