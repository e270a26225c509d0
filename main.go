// Command authsvc is a token-refresh auth service: a drop-in replacement for
// a NestJS auth module whose refresh endpoint never fails under concurrency.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/authsvc/auth"
	"github.com/tokenrelay/authsvc/config"
	"github.com/tokenrelay/authsvc/demo"
	"github.com/tokenrelay/authsvc/handlers"
	"github.com/tokenrelay/authsvc/loadtest"
	"github.com/tokenrelay/authsvc/models"
	"github.com/tokenrelay/authsvc/mutex"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(cli(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// cli runs the command that args name and returns the exit code: the
// service by default, or a subcommand.
func cli(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		if len(args) > 0 {
			fmt.Fprintf(stderr, "authsvc serve takes no arguments (it is configured by environment variables)\n%s", usage)
			return 2
		}
		tuneGC(getenv)
		if err := run(ctx, getenv, stdout, nil); err != nil {
			fatal(stderr, getenv, err)
			return 1
		}
		return 0
	case "migrate":
		return migrateMain(ctx, args, getenv, stdout, stderr)
	case "loadtest":
		return loadtest.Main(ctx, args, stdout, stderr)
	case "demo":
		return demo.Main(ctx, args, stdout, stderr, demoService(stderr))
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		printVariables(stdout)
		return 0
	case "-v", "-version", "--version", "version":
		fmt.Fprintln(stdout, version())
		return 0
	}
	fmt.Fprintf(stderr, "authsvc: unknown command %q\n%s", cmd, usage)
	return 2
}

const usage = `usage: authsvc [command]

commands:
  serve             run the service (the default), configured by environment variables
  migrate [status]  apply the schema migrations to DATABASE_URL, or list them
  loadtest ...      run load scenarios against a running server (authsvc loadtest -h)
  demo [flags]      show the refresh race: the naive rotation, a mutex alone, and this service (authsvc demo -h)
  version           print the version
  help              print this help
`

// demoService is the service for `authsvc demo`: run, as serve runs it,
// logging to log (the demo sets LOG_LEVEL=warn: only what goes wrong).
func demoService(log io.Writer) demo.ServeFunc {
	return func(ctx context.Context, getenv func(string) string, ready chan<- net.Addr) error {
		return run(ctx, getenv, log, ready)
	}
}

// printVariables lists the environment variables with their defaults.
func printVariables(w io.Writer) {
	fmt.Fprintln(w, "\nenvironment variables:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, v := range config.Variables {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.Name, v.Default, v.Meaning)
	}
	tw.Flush()
}

// version is the module version and the commit it was built from, as the
// Go toolchain recorded them in the binary.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "authsvc (no build information)"
	}
	v := "authsvc " + info.Main.Version
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if rev := settings["vcs.revision"]; rev != "" {
		v += " commit " + rev
		if settings["vcs.modified"] == "true" {
			v += " (modified)"
		}
		if t := settings["vcs.time"]; t != "" {
			v += " " + t
		}
	}
	return v + " " + info.GoVersion
}

// fatal reports the error that stopped the service, in the log's format:
// under LOG_FORMAT=json a log collector reads it like every other line.
func fatal(stderr io.Writer, getenv func(string) string, err error) {
	if getenv("LOG_FORMAT") == "json" {
		slog.New(slog.NewJSONHandler(stderr, nil)).Error("authsvc stopped", "error", err.Error())
		return
	}
	fmt.Fprintln(stderr, "authsvc:", err)
}

// run starts the service and serves until ctx ends, then shuts down
// gracefully: it stops accepting, lets requests in flight finish, and closes
// the database. When ready is not nil, run sends it the address it listens on.
// gcPercent is the garbage collector's target when GOGC is not set: the heap
// may grow to five times what is live before a collection, where Go's
// default is twice. The service's heap in use is about 8 MB under a
// 50-client chain load (go_memstats_heap_inuse_bytes), so that is tens of MB,
// and a collection comes after four times as much allocation: server CPU per
// refresh under that load fell from 181 to 159 us (bench/sqlite.sh, three
// runs each, the default and then GOGC=400, one after the other). GOGC, and
// GOMEMLIMIT for a hard ceiling, keep their usual meaning.
const gcPercent = 400

func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
}

func run(ctx context.Context, getenv func(string) string, stdout io.Writer, ready chan<- net.Addr) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	var handler slog.Handler = slog.NewTextHandler(stdout, &slog.HandlerOptions{Level: cfg.LogLevel})
	if cfg.LogJSON {
		handler = slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: cfg.LogLevel})
	}
	log := slog.New(handler)
	if cfg.JWTSecretGenerated {
		log.Warn("JWT_SECRET is not set: using a random secret for this process; tokens will not survive a restart or verify on other instances")
	}

	registry := prometheus.NewRegistry()
	db, err := openDatabase(ctx, cfg, log, models.MaxConns(cfg.DBMaxConns), models.OnGroupCommit(auth.NewCommitMetrics(registry)))
	if err != nil {
		return err
	}
	defer db.Close()
	// Time decisions follow the database's clock, so instances whose clocks
	// drift apart still agree on the reuse window and on expiry.
	clock := db.Clock(time.Now)
	if offset, err := clock.Sync(ctx); err != nil {
		return err
	} else if offset.Abs() > time.Second {
		log.Warn("this host's clock differs from the database's; token times follow the database", "offset", offset.String())
	}

	maintenance := startJobs(ctx)
	defer maintenance.stop() // before the database closes
	maintenance.every(30*time.Second, func(ctx context.Context) {
		if _, err := clock.Sync(ctx); err != nil && ctx.Err() == nil {
			log.Warn("database clock", "error", err.Error())
		}
	})
	// Every refresh keeps its rotated row for reuse detection: without
	// pruning the table would only grow.
	maintenance.every(time.Hour, func(ctx context.Context) {
		n, err := db.PruneExpired(ctx, clock.Now().UTC())
		switch {
		case err != nil && ctx.Err() == nil:
			log.Error("prune expired refresh tokens", "error", err.Error())
		case n > 0:
			log.Info("pruned expired refresh tokens", "count", n)
		}
	})
	// A sealed successor serves replays within the reuse window only.
	maintenance.every(min(max(cfg.ReuseWindow, time.Second), time.Minute), func(ctx context.Context) {
		if _, err := db.EraseSeals(ctx, clock.Now().UTC().Add(-cfg.ReuseWindow)); err != nil && ctx.Err() == nil {
			log.Error("erase sealed successors", "error", err.Error())
		}
	})

	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "auth_db_retries_total",
			Help: "Database operations retried after a transient failure (a connection reset, a failover, a serialization failure).",
		}, func() float64 { return float64(db.Retries()) }))
	lock, err := newLockService(ctx, cfg, log, registry)
	if err != nil {
		return err
	}
	defer lock.close()
	svc, err := auth.NewService(db, lock.locks, auth.Config{
		Secret:         cfg.JWTSecret,
		AccessTTL:      cfg.AccessTTL,
		RefreshTTL:     cfg.RefreshTTL,
		ReuseWindow:    cfg.ReuseWindow,
		PreviousSecret: cfg.JWTSecretPrevious,
		WorkTimeout:    cfg.LockTimeout + 10*time.Second,
		Now:            clock.Now,
		Logger:         log,
		Metrics:        auth.NewMetrics(registry),
		Hashing:        auth.HashingConfig{Concurrency: cfg.BcryptConcurrency, Wait: cfg.BcryptQueueTimeout},
	})
	if err != nil {
		return err
	}
	limits, closeLimits, err := newThrottle(cfg, log, registry)
	if err != nil {
		return err
	}
	defer closeLimits()
	e := handlers.NewServer(handlers.Deps{Auth: svc, DB: db, Lock: lock.check, Locks: lock.locks, Registry: registry, Logger: log,
		Throttle: limits, TrustedProxies: cfg.TrustedProxies,
		CORS: handlers.CORS{Origins: cfg.CORSOrigins, Credentials: cfg.CORSCredentials}, BehindTLS: cfg.BehindTLS})

	if cfg.PprofAddr != "" {
		profiles, err := startPprof(cfg.PprofAddr, log)
		if err != nil {
			return err
		}
		defer profiles.stop(log)
	}
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(cfg.Port))
	if err != nil {
		return err
	}
	e.Listener = ln
	log.Info("listening", "addr", ln.Addr().String(), "database", db.Dialect(), "lock", lock.kind)
	if ready != nil {
		ready <- ln.Addr()
	}

	served := make(chan error, 1)
	go func() { served <- e.Start("") }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing requests in flight")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := e.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}

// openDatabase opens DATABASE_URL and migrates its schema, or with
// MIGRATE_ON_START=false refuses a schema that lacks migrations.
func openDatabase(ctx context.Context, cfg config.Config, log *slog.Logger, opts ...models.OpenOption) (*models.DB, error) {
	db, err := models.Open(ctx, cfg.DatabaseURL, log, append(opts, models.MigrateOnOpen(cfg.MigrateOnStart))...)
	if errors.Is(err, models.ErrPendingMigrations) {
		return nil, fmt.Errorf("%w; run \"authsvc migrate\" first, or start with MIGRATE_ON_START=true", err)
	}
	return db, err
}

const migrateUsage = `usage: authsvc migrate [up]    apply the pending schema migrations to DATABASE_URL
       authsvc migrate status  list the migrations and whether DATABASE_URL has them
`

// migrateMain is `authsvc migrate`: it applies the pending schema migrations
// to DATABASE_URL and prints those it applied, or with "status" prints every
// migration's state. It returns the process's exit code.
func migrateMain(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cmd := "up"
	if len(args) > 0 {
		cmd = args[0]
	}
	if len(args) > 1 || (cmd != "up" && cmd != "status") {
		if cmd == "-h" || cmd == "-help" || cmd == "--help" || cmd == "help" {
			fmt.Fprint(stdout, migrateUsage)
			return 0
		}
		fmt.Fprint(stderr, migrateUsage)
		return 2
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		fmt.Fprintln(stderr, "authsvc migrate:", err)
		return 1
	}
	// Results go to stdout; the log (stderr) only carries what goes wrong.
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: max(cfg.LogLevel, slog.LevelWarn)}))
	if cmd == "up" {
		applied, err := models.Migrate(ctx, cfg.DatabaseURL, log)
		for _, m := range applied {
			fmt.Fprintf(stdout, "applied %s (version %d) in %s\n", m.Name, m.Version, m.Duration.Round(time.Millisecond))
		}
		if err != nil {
			fmt.Fprintln(stderr, "authsvc migrate:", err)
			return 1
		}
		if len(applied) == 0 {
			fmt.Fprint(stdout, "no pending migrations\n")
		}
	}
	status, err := models.MigrationStatus(ctx, cfg.DatabaseURL, log)
	if err != nil {
		fmt.Fprintln(stderr, "authsvc migrate:", err)
		return 1
	}
	var current int64
	pending := 0
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	if cmd == "status" {
		fmt.Fprintln(tw, "VERSION\tSTATE\tAPPLIED AT\tMIGRATION")
	}
	for _, m := range status {
		state, at, name := "pending", "-", m.Name
		if m.Applied {
			current = max(current, m.Version)
			state, at = "applied", m.AppliedAt.UTC().Format(time.DateTime)
		} else {
			pending++
		}
		if name == "" {
			name = "(not in this build)"
		}
		if cmd == "status" {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", m.Version, state, at, name)
		}
	}
	tw.Flush()
	fmt.Fprintf(stdout, "%s schema at version %d, %d pending\n", dialectName(cfg.DatabaseURL), current, pending)
	return 0
}

// dialectName names the database of url without printing the URL, which
// may hold a password.
func dialectName(url string) string {
	if strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://") {
		return "postgres"
	}
	return "sqlite"
}

// lockService is the service's lock and what goes with it.
type lockService struct {
	locks interface {
		auth.Locker
		handlers.LockStats
	}
	check handlers.Pinger // for /health; nil for the in-process lock
	kind  string
	close func() error
}

// newLockService returns the in-process lock, or with REDIS_URL the
// Redis-backed one that several instances share.
//
// The Redis lock only saves work (the database's compare-and-swap keeps
// refreshes correct), so its client fails fast: short timeouts, one retry,
// and a circuit breaker in the lock. A Redis that is down at start is not an
// error either: the instance serves, degraded, and uses the lock once Redis
// answers.
func newLockService(ctx context.Context, cfg config.Config, log *slog.Logger, reg prometheus.Registerer) (lockService, error) {
	if cfg.RedisURL == "" {
		return lockService{locks: mutex.NewMemory(mutex.MemoryOptions{Timeout: cfg.LockTimeout}), kind: "memory", close: func() error { return nil }}, nil
	}
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return lockService{}, fmt.Errorf("REDIS_URL: %w", err)
	}
	for _, d := range []*time.Duration{&opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout} {
		if *d == 0 { // not set in the URL
			*d = 500 * time.Millisecond
		}
	}
	if opts.MaxRetries == 0 {
		opts.MaxRetries = 1 // acquiring is idempotent, so a retried command is safe
	}
	if opts.DialerRetries == 0 {
		// go-redis dials 5 times, 100 ms apart, before it gives up: the
		// request that probes a Redis that is down would wait that long.
		opts.DialerRetries = 1
	}
	client := redis.NewClient(opts)
	// go-redis reports each failed dial itself; the lock reports an outage
	// once, so its lines go to debug, in the service's log format.
	redis.SetLogger(redisLog{log.With("component", "redis")})
	up := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "auth_redis_up",
		Help: "1 while the Redis lock answers, 0 while refreshes go on under the database compare-and-swap alone.",
	})
	up.Set(1)
	reg.MustRegister(up)
	locks := mutex.NewRedis(client, mutex.RedisOptions{
		Timeout: cfg.LockTimeout,
		OnStateChange: func(err error) {
			if err != nil {
				up.Set(0)
				log.Warn("redis unavailable: refreshes go on under the database compare-and-swap alone", "error", err.Error())
				return
			}
			up.Set(1)
			log.Info("redis answers again: per-token locks are back")
		},
	})
	pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_ = locks.Ping(pingCtx) // a failure is logged by OnStateChange; the instance serves anyway
	return lockService{locks: locks, check: locks, kind: "redis", close: client.Close}, nil
}

// jobs runs periodic maintenance beside the server.
type jobs struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startJobs(ctx context.Context) *jobs {
	ctx, cancel := context.WithCancel(ctx)
	return &jobs{ctx: ctx, cancel: cancel}
}

// every runs fn now and then every interval in a goroutine of its own, until
// the jobs stop.
func (j *jobs) every(interval time.Duration, fn func(ctx context.Context)) {
	j.wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			fn(j.ctx)
			select {
			case <-j.ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
}

// stop ends every job and waits for them.
func (j *jobs) stop() {
	j.cancel()
	j.wg.Wait()
}

// redisLog sends go-redis's own messages to slog at debug.
type redisLog struct{ log *slog.Logger }

func (r redisLog) Printf(ctx context.Context, format string, args ...any) {
	r.log.DebugContext(ctx, fmt.Sprintf(format, args...))
}
