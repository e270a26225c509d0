package auth

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the service's Prometheus collectors. A nil *Metrics records nothing.
type Metrics struct {
	refreshes *counters
	callers   *counters
	locks     *counters
	lockWaits prometheus.Histogram
	lockHolds prometheus.Histogram
	hash      hashMetrics
}

// NewMetrics registers the service's collectors with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		refreshes: newCounters(prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auth_refresh_total",
			Help: "Refresh operations run against the database, by result: rotated, replayed (reuse window), reused (family revoked), invalid, expired, revoked.",
		}, []string{"result"})),
		callers: newCounters(prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auth_refresh_callers_total",
			Help: "Refresh requests answered, by whether they shared one operation with concurrent requests for the same token.",
		}, []string{"shared"})),
		locks: newCounters(prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auth_refresh_lock_total",
			Help: "Locks asked for to rotate a live refresh token, by outcome: acquired; unavailable or abandoned (the rotation went on under the database compare-and-swap alone); timeout (a live holder kept it too long).",
		}, []string{"outcome"})),
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
	reg.MustRegister(m.refreshes.vec, m.callers.vec, m.locks.vec, m.lockWaits, m.lockHolds)
	m.hash = newHashMetrics(reg)
	return m
}

func (m *Metrics) result(r string) {
	if m != nil {
		m.refreshes.inc(r)
	}
}

func (m *Metrics) shared(shared bool) {
	if m == nil {
		return
	}
	m.callers.inc(strconv.FormatBool(shared))
}

func (m *Metrics) lock(outcome string) {
	if m != nil {
		m.locks.inc(outcome)
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

// counters is a counter vector of one label whose children are looked up
// once per label value and then kept. WithLabelValues, on every refresh
// three times, allocates its variadic slice, checks the value is UTF-8,
// hashes it and takes the vector's lock; a sync.Map read is none of these
// once the value was seen. The children are created on first use, as with
// WithLabelValues alone, so /metrics shows the same series.
type counters struct {
	vec  *prometheus.CounterVec
	seen sync.Map // label value → prometheus.Counter
}

func newCounters(vec *prometheus.CounterVec) *counters { return &counters{vec: vec} }

func (c *counters) inc(value string) {
	if ctr, ok := c.seen.Load(value); ok {
		ctr.(prometheus.Counter).Inc()
		return
	}
	ctr := c.vec.WithLabelValues(value)
	c.seen.Store(value, ctr)
	ctr.Inc()
}
