package throttle

import (
	"context"
	"hash/maphash"
	"slices"
	"sync"
	"time"
)

const shards = 32

// DefaultMaxKeys is the number of keys a Memory holds when MemoryOptions
// says nothing: about 10 MB at most.
const DefaultMaxKeys = 1 << 18

// MemoryOptions configure a Memory. The zero value is usable.
type MemoryOptions struct {
	// MaxKeys bounds the keys held (DefaultMaxKeys when zero). Past it the
	// idle keys go first, then those closest to having their whole limit back.
	MaxKeys int
	Now     func() time.Time // time.Now when nil
}

// Memory is a Limiter in this process's memory. It holds one number per key
// (a hash of the key, not the key), forgets keys that are back to their
// whole limit once it needs room, and never holds more than MaxKeys: a flood
// of distinct addresses or emails costs it bounded memory. It is safe for
// concurrent use.
type Memory struct {
	seed     maphash.Seed
	perShard int
	now      func() time.Time
	shards   [shards]shard
}

type shard struct {
	mu   sync.Mutex
	tats map[uint64]int64 // key hash → theoretical arrival time, unix ns
}

// NewMemory returns an empty Memory.
func NewMemory(opts MemoryOptions) *Memory {
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = DefaultMaxKeys
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Memory{seed: maphash.MakeSeed(), perShard: max(opts.MaxKeys/shards, 1), now: opts.Now}
	for i := range m.shards {
		m.shards[i].tats = make(map[uint64]int64)
	}
	return m
}

// Allow counts one request of key at rate r.
func (m *Memory) Allow(_ context.Context, key string, r Rate) Result {
	if !r.Valid() {
		return Result{Allowed: true, Limit: r.Limit}
	}
	h := maphash.String(m.seed, key)
	s := &m.shards[h%shards]
	now := m.now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	tat, known := s.tats[h]
	if !known && len(s.tats) >= m.perShard {
		s.makeRoom(now, m.perShard)
	}
	next, res := gcra(tat, now, r) // next > now: a key just seen is never back to its whole limit
	s.tats[h] = next
	return res
}

// Len returns the number of keys held.
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.tats)
		s.mu.Unlock()
	}
	return n
}

// makeRoom frees at least a quarter of a full shard: the keys that are back
// to their whole limit (tat passed, as if never seen) go first; if that is
// not enough, those with the earliest tat, which are the closest to it. A
// key under attack has its tat far ahead and stays. Freeing a quarter at
// once makes the sort cost a fraction of an operation per new key.
func (s *shard) makeRoom(now int64, limit int) {
	for h, tat := range s.tats {
		if tat <= now {
			delete(s.tats, h)
		}
	}
	target := limit - max(limit/4, 1)
	if len(s.tats) <= target {
		return
	}
	tats := make([]int64, 0, len(s.tats))
	for _, tat := range s.tats {
		tats = append(tats, tat)
	}
	slices.Sort(tats)
	cut := tats[len(tats)-target-1] // keys with a tat up to cut go
	for h, tat := range s.tats {
		if tat <= cut {
			delete(s.tats, h)
		}
	}
}
