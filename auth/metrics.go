package auth

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the service's Prometheus collectors. A nil *Metrics records nothing.
type Metrics struct {
	refreshes *prometheus.CounterVec
	callers   *prometheus.CounterVec
	locks     *prometheus.CounterVec
	lockWaits prometheus.Histogram
	lockHolds prometheus.Histogram
	hash      hashMetrics
}

// NewMetrics registers the service's collectors with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auth_refresh_total",
			Help: "Refresh operations run against the database, by result: rotated, replayed (reuse window), reused (family revoked), invalid, expired, revoked.",
		}, []string{"result"}),
		callers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auth_refresh_callers_total",
			Help: "Refresh requests answered, by whether they shared one operation with concurrent requests for the same token.",
		}, []string{"shared"}),
		locks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auth_refresh_lock_total",
			Help: "Locks asked for to rotate a live refresh token, by outcome: acquired; unavailable or abandoned (the rotation went on under the database compare-and-swap alone); timeout (a live holder kept it too long).",
		}, []string{"outcome"}),
	}
	lockBuckets := []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	m.lockWaits = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "auth_refresh_lock_wait_seconds",
		Help:    "Time from asking for a token's lock to holding it, for the rotations that got it.",
		Buckets: lockBuckets,
	})
	m.lockHolds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "auth_refresh_lock_hold_seconds",
		Help:    "Time a token's lock was held: the rotation under it.",
		Buckets: lockBuckets,
	})
	reg.MustRegister(m.refreshes, m.callers, m.locks, m.lockWaits, m.lockHolds)
	m.hash = newHashMetrics(reg)
	return m
}

func (m *Metrics) result(r string) {
	if m != nil {
		m.refreshes.WithLabelValues(r).Inc()
	}
}

func (m *Metrics) shared(shared bool) {
	if m == nil {
		return
	}
	if shared {
		m.callers.WithLabelValues("true").Inc()
	} else {
		m.callers.WithLabelValues("false").Inc()
	}
}

func (m *Metrics) lock(outcome string) {
	if m != nil {
		m.locks.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) lockWait(d time.Duration) {
	if m != nil {
		m.lockWaits.Observe(d.Seconds())
	}
}

func (m *Metrics) lockHold(d time.Duration) {
	if m != nil {
		m.lockHolds.Observe(d.Seconds())
	}
}
