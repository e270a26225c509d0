package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"sync"
)

// hmacPool hands out HMAC-SHA256 states keyed with one secret, with scratch
// buffers, for the two HMACs of every refresh: the access token's signature
// and the sealing key of the successor.
//
// Why a pool: hmac.New allocates the inner and outer SHA-256 states and the
// two padded keys (five allocations, ~0.5 KB) and hashes the key's pads
// again, for each token; a pooled state is Reset to its keyed start (the
// pads' hashes saved after the first use) and writes into buffers that
// outlive the call. Data handed to hash.Hash.Write escapes (an interface
// call), so the scratch buffers live here rather than on the stack.
type hmacPool struct{ pool sync.Pool }

// hmacState is one pooled HMAC and its scratch buffers.
type hmacState struct {
	mac     hash.Hash
	in, out []byte // what is hashed, and what is built from the sum
	sum     [sha256.Size]byte
}

func newHMACPool(key []byte) *hmacPool {
	key = append([]byte(nil), key...) // the caller's slice may change; the pool keeps using the key
	p := &hmacPool{}
	p.pool.New = func() any { return &hmacState{mac: hmac.New(sha256.New, key)} }
	return p
}

// get returns a state whose MAC is at its keyed start and whose buffers are empty.
func (p *hmacPool) get() *hmacState {
	st := p.pool.Get().(*hmacState)
	st.mac.Reset()
	st.in, st.out = st.in[:0], st.out[:0]
	return st
}

// put returns st to the pool; nothing of it may be used after.
func (p *hmacPool) put(st *hmacState) { p.pool.Put(st) }

// sumIn returns the HMAC of st.in, in st.sum (valid until st is put back).
func (st *hmacState) sumIn() []byte {
	st.mac.Write(st.in)
	return st.mac.Sum(st.sum[:0])
}
