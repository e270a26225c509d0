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
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/authsvc/auth"
	"github.com/tokenrelay/authsvc/config"
	"github.com/tokenrelay/authsvc/handlers"
	"github.com/tokenrelay/authsvc/loadtest"
	"github.com/tokenrelay/authsvc/models"
	"github.com/tokenrelay/authsvc/mutex"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "loadtest" {
		// The load tool: `go run . loadtest storm|chain ...` (see loadtest).
		os.Exit(loadtest.Main(ctx, os.Args[2:], os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 {
		fmt.Fprintf(os.Stderr, "authsvc: unknown command %q\nusage: authsvc            run the service (configured by environment variables)\n       authsvc loadtest ...  run load scenarios against a server (authsvc loadtest -h)\n", os.Args[1])
		os.Exit(2)
	}
	if err := run(ctx, os.Getenv, os.Stdout, nil); err != nil {
		fmt.Fprintln(os.Stderr, "authsvc:", err)
		os.Exit(1)
	}
}

// run starts the service and serves until ctx ends, then shuts down
// gracefully: it stops accepting, lets requests in flight finish, and closes
// the database. When ready is not nil, run sends it the address it listens on.
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

	db, err := models.Open(ctx, cfg.DatabaseURL, log)
	if err != nil {
		return err
	}
	defer db.Close()
	pruneCtx, stopPruning := context.WithCancel(ctx)
	pruning := make(chan struct{})
	go func() { defer close(pruning); pruneExpired(pruneCtx, db, log, time.Hour) }()
	defer func() { stopPruning(); <-pruning }() // before the database closes

	// Time decisions follow the database's clock, so instances whose clocks
	// drift apart still agree on the reuse window and on expiry.
	clock := db.Clock(time.Now)
	if offset, err := clock.Sync(ctx); err != nil {
		return err
	} else if offset.Abs() > time.Second {
		log.Warn("this host's clock differs from the database's; token times follow the database", "offset", offset.String())
	}
	clockCtx, stopClock := context.WithCancel(ctx)
	clockDone := make(chan struct{})
	go func() { defer close(clockDone); syncClock(clockCtx, clock, log, 30*time.Second) }()
	defer func() { stopClock(); <-clockDone }()

	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	lock, err := newLockService(ctx, cfg, log, registry)
	if err != nil {
		return err
	}
	defer lock.close()
	svc, err := auth.NewService(db, lock.locks, auth.Config{
		Secret:      cfg.JWTSecret,
		AccessTTL:   cfg.AccessTTL,
		RefreshTTL:  cfg.RefreshTTL,
		ReuseWindow: cfg.ReuseWindow,
		WorkTimeout: cfg.LockTimeout + 10*time.Second,
		Now:         clock.Now,
		Logger:      log,
		Metrics:     auth.NewMetrics(registry),
		Hashing:     auth.HashingConfig{Concurrency: cfg.BcryptConcurrency, Wait: cfg.BcryptQueueTimeout},
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
		Throttle: limits, TrustedProxies: cfg.TrustedProxies})

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
		return lockService{locks: mutex.NewMemory(cfg.LockTimeout), kind: "memory", close: func() error { return nil }}, nil
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
	client := redis.NewClient(opts)
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

// syncClock measures the database clock's offset every interval until ctx
// ends; a failure keeps the last offset.
func syncClock(ctx context.Context, clock *models.Clock, log *slog.Logger, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if _, err := clock.Sync(ctx); err != nil && ctx.Err() == nil {
			log.Warn("database clock", "error", err.Error())
		}
	}
}

// pruneExpired deletes expired refresh tokens now and then every interval
// until ctx ends: every refresh keeps its rotated row for reuse detection, and
// without this the table would only grow.
func pruneExpired(ctx context.Context, db *models.DB, log *slog.Logger, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		n, err := db.PruneExpired(ctx, time.Now().UTC())
		switch {
		case err != nil && ctx.Err() == nil:
			log.Error("prune expired refresh tokens", "error", err.Error())
		case n > 0:
			log.Info("pruned expired refresh tokens", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
