package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/authsvc/config"
	"github.com/tokenrelay/authsvc/handlers"
	"github.com/tokenrelay/authsvc/throttle"
)

// newThrottle returns the limits on logins and registrations that cfg asks
// for (nil with THROTTLE=off) and a function that releases them. With
// REDIS_URL the counts live in Redis, on a client of their own that gives up
// quickly: a Redis that does not answer within 250ms leaves the decision to
// this instance's own counts, never to a refusal.
func newThrottle(cfg config.Config, log *slog.Logger, reg prometheus.Registerer) (*handlers.Throttle, func() error, error) {
	none := func() error { return nil }
	if !cfg.Throttle {
		log.Info("THROTTLE=off: logins and registrations are not rate-limited")
		return nil, none, nil
	}
	t := &handlers.Throttle{LoginIP: cfg.ThrottleLoginIP, LoginAccount: cfg.ThrottleLoginAccount, RegisterIP: cfg.ThrottleRegisterIP}
	log.Info("rate limits", "login_per_address", t.LoginIP.String(), "login_per_account", t.LoginAccount.String(),
		"register_per_address", t.RegisterIP.String(), "trusted_proxies", len(cfg.TrustedProxies))
	local := throttle.NewMemory(throttle.MemoryOptions{})
	if cfg.RedisURL == "" {
		t.Limiter = local
		return t, none, nil
	}
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	for _, d := range []*time.Duration{&opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout} {
		if *d == 0 || *d > 200*time.Millisecond { // at most 200ms, whatever the URL says for the lock
			*d = 200 * time.Millisecond
		}
	}
	opts.MaxRetries = -1   // a retried count could count twice; the local limiter answers instead
	opts.DialerRetries = 1 // a refused connection is an answer: decide locally at once
	client := redis.NewClient(opts)
	fallbacks := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "auth_throttle_local_total",
		Help: "Rate-limit decisions made by this instance alone because Redis did not answer.",
	})
	reg.MustRegister(fallbacks)
	t.Limiter = throttle.NewRedis(client, throttle.RedisOptions{
		Local:      local,
		OnFallback: fallbacks.Inc,
		OnStateChange: func(err error) {
			if err != nil {
				log.Warn("rate limits: redis is not answering; each instance counts alone", "error", err.Error())
				return
			}
			log.Info("rate limits: redis answers again; the counts are shared again")
		},
	})
	return t, client.Close, nil
}
