package auth

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// blockingHasher holds every hash until release closes.
type blockingHasher struct {
	entered chan struct{}
	release chan struct{}
}

func (b blockingHasher) Hash(p []byte) ([]byte, error) {
	b.entered <- struct{}{}
	<-b.release
	return p, nil
}

func (b blockingHasher) Compare(h, p []byte) error { return nil }

// TestHashQueueBounds: one slot, two places in line; of 100 more callers
// none waits, and a waiter whose caller leaves gets its context's error,
// not ErrBusy, and frees its place.
func TestHashQueueBounds(t *testing.T) {
	h := blockingHasher{entered: make(chan struct{}, 100), release: make(chan struct{})}
	q := newHashQueue(h, HashingConfig{Concurrency: 1, Queue: 2, Wait: time.Hour}, nil)
	var wg sync.WaitGroup
	done := make(chan error, 3)
	wg.Go(func() { _, err := q.hash(context.Background(), nil); done <- err })
	<-h.entered
	ctx, leave := context.WithCancel(context.Background())
	wg.Go(func() { _, err := q.hash(ctx, nil); done <- err })
	wg.Go(func() { _, err := q.hash(context.Background(), nil); done <- err })
	for q.waiting.Load() != 2 { // both in line (polled: the queue has no hook to wait on)
		time.Sleep(time.Millisecond)
	}
	var busy sync.WaitGroup
	errs := make(chan error, 100)
	for range 100 {
		busy.Go(func() { _, err := q.hash(context.Background(), nil); errs <- err })
	}
	busy.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrBusy) {
			t.Fatalf("a caller past the line = %v, want ErrBusy", err)
		}
	}
	leave()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("a waiter whose caller left = %v, want context.Canceled", err)
	}
	if q.waiting.Load() != 1 {
		t.Errorf("%d in line after one left, want 1", q.waiting.Load())
	}
	close(h.release)
	wg.Wait()
	close(done)
	for err := range done {
		if err != nil {
			t.Errorf("a hash that had its turn = %v", err)
		}
	}
}
