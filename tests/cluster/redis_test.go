package cluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"
)

// lockKey is the key in Redis under which the service locks a refresh
// token: mutex.Redis's default prefix "authsvc:lock:", then the key
// auth.Service.Refresh locks, "refresh_token_" and the token's SHA-256 in hex.
// refreshWatchingLock checks that the service still uses it.
func lockKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "authsvc:lock:refresh_token_" + hex.EncodeToString(sum[:])
}

// refreshWatchingLock refreshes token through in and fails the test unless
// the service touched lockKey(token) in Redis meanwhile: a test that plants
// a lock for the service must know it plants the key the service takes.
func (r *redisServer) refreshWatchingLock(t *testing.T, in *instance, token string) tokens {
	t.Helper()
	ctx := t.Context()
	if err := r.client.ConfigSet(ctx, "notify-keyspace-events", "K$g").Err(); err != nil {
		t.Fatalf("enable keyspace events: %v", err)
	}
	key := lockKey(token)
	sub := r.client.Subscribe(ctx, "__keyspace@0__:"+key)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription is in place
		t.Fatalf("subscribe to keyspace events: %v", err)
	}
	tk, err := in.refresh(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	wait, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := sub.ReceiveMessage(wait); err != nil {
		t.Fatalf("a refresh did not touch %s in Redis (%v): the test's lock key is not the service's", key, err)
	}
	return tk
}

// plantLock sets token's lock in Redis as another holder would have: a
// random value with a lease of ttl.
func (r *redisServer) plantLock(t *testing.T, token string, ttl time.Duration) {
	t.Helper()
	if err := r.client.Set(t.Context(), lockKey(token), rand.Text(), ttl).Err(); err != nil {
		t.Fatalf("plant a lock: %v", err)
	}
}
