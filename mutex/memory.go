package mutex

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

type contendedKey struct{}

func withContended(ctx context.Context) context.Context {
	return context.WithValue(ctx, contendedKey{}, true)
}

// Contended reports whether ctx is the context of a WithLock's fn that had to
// wait for another holder before it ran. A caller that reads state before
// taking the lock can then read it again only when someone else may have
// changed it meanwhile.
func Contended(ctx context.Context) bool {
	v, _ := ctx.Value(contendedKey{}).(bool)
	return v
}

// ErrLockTimeout is returned by WithLock when the lock could not be acquired
// before the configured timeout or the end of ctx; fn did not run. The
// returned error also matches the cause (context.DeadlineExceeded or
// context.Canceled).
var ErrLockTimeout = errors.New("mutex: lock timeout")

// MemoryOptions configure a Memory. The zero value is usable.
type MemoryOptions struct {
	// Timeout bounds a wait for a held key. Zero or less: only ctx bounds
	// it, and WithLock waits until the key is free or ctx ends.
	Timeout time.Duration
}

// Memory is an in-process keyed lock. Holders of different keys never wait for
// each other; waiters for one key are served in arrival order. Entries exist
// only while a key is held, so memory does not grow with the number of distinct
// keys ever used.
//
// The zero value is a Memory with no timeout: only ctx bounds a wait. A
// Memory must not be copied after first use.
type Memory struct {
	timeout time.Duration

	mu    sync.Mutex
	locks map[string]*entry // made on first use
	peak  int               // most keys held at once since locks was last made
	pool  sync.Pool         // *entry, reused to keep the uncontended path allocation-free
}

// shrinkAfter is the peak size past which an emptied map is replaced: Go maps
// never give back their buckets, so a burst of keys would otherwise pin memory.
const shrinkAfter = 1024

// entry is the state of one held key. Waiters queue on their own channel so
// that a waiter can select on its context too; the holder hands the lock to
// the first waiter directly, without ever leaving the key unheld.
type entry struct {
	waiters []chan struct{}
}

// NewMemory returns a Memory configured by opts.
func NewMemory(opts MemoryOptions) *Memory {
	return &Memory{timeout: opts.Timeout}
}

// WithLock runs fn while holding the lock for key, waiting until the lock is
// free, the timeout passes or ctx is done; in the last two cases it returns an
// error matching ErrLockTimeout and fn does not run. The lock is released when
// fn returns or panics (the panic propagates). fn receives ctx, marked
// Contended when fn had to wait for another holder. WithLock is safe for
// concurrent use.
func (m *Memory) WithLock(ctx context.Context, key string, fn func(context.Context) error) error {
	waited, err := m.acquire(ctx, key)
	if err != nil {
		return err
	}
	defer m.release(key)
	if waited {
		ctx = withContended(ctx)
	}
	return fn(ctx)
}

// acquire takes the lock for key, waiting in line when it is held, and
// reports whether it waited.
func (m *Memory) acquire(ctx context.Context, key string) (waited bool, err error) {
	m.mu.Lock()
	e, held := m.locks[key]
	if !held {
		if m.locks == nil {
			m.locks = make(map[string]*entry)
		}
		e, _ = m.pool.Get().(*entry)
		if e == nil {
			e = new(entry)
		}
		m.locks[key] = e
		m.peak = max(m.peak, len(m.locks))
		m.mu.Unlock()
		return false, nil
	}
	// Checked only here: a free lock is taken even with a done context, as
	// sync.Mutex would, which keeps the uncontended path free of it.
	if err := ctx.Err(); err != nil {
		m.mu.Unlock()
		return false, fmt.Errorf("%w: %w", ErrLockTimeout, err)
	}
	turn := make(chan struct{})
	e.waiters = append(e.waiters, turn)
	m.mu.Unlock()

	var expired <-chan time.Time
	if m.timeout > 0 {
		t := time.NewTimer(m.timeout)
		defer t.Stop()
		expired = t.C
	}
	var cause error
	select {
	case <-turn:
		return true, nil
	case <-ctx.Done():
		cause = ctx.Err()
	case <-expired:
		cause = context.DeadlineExceeded
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-turn:
		// The holder handed the lock over while we were giving up: pass it on
		// as if we had held it, so the next waiter is not stranded.
		m.releaseLocked(key, e)
	default:
		e.waiters = removeWaiter(e.waiters, turn)
	}
	return true, fmt.Errorf("%w: waited for %q: %w", ErrLockTimeout, key, cause)
}

func (m *Memory) release(key string) {
	m.mu.Lock()
	m.releaseLocked(key, m.locks[key])
	m.mu.Unlock()
}

// releaseLocked hands the lock to the first waiter or forgets the key. m.mu is held.
func (m *Memory) releaseLocked(key string, e *entry) {
	if len(e.waiters) == 0 {
		delete(m.locks, key)
		if len(m.locks) == 0 && m.peak > shrinkAfter {
			m.locks, m.peak = make(map[string]*entry), 0
		}
		e.waiters = e.waiters[:0]
		m.pool.Put(e)
		return
	}
	next := e.waiters[0]
	copy(e.waiters, e.waiters[1:])
	e.waiters[len(e.waiters)-1] = nil
	e.waiters = e.waiters[:len(e.waiters)-1]
	close(next)
}

func removeWaiter(ws []chan struct{}, w chan struct{}) []chan struct{} {
	for i, c := range ws {
		if c == w {
			copy(ws[i:], ws[i+1:])
			ws[len(ws)-1] = nil
			return ws[:len(ws)-1]
		}
	}
	return ws
}

// ActiveLockCount reports how many keys are held right now.
func (m *Memory) ActiveLockCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.locks)
}

// IsLocked reports whether key is held right now.
func (m *Memory) IsLocked(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, held := m.locks[key]
	return held
}
