//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package models

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"
)

// lockFile takes an exclusive flock(2) on the file at path, creating it if
// need be, and returns its release. It serializes the migrators of one SQLite
// database across processes and within one: every call opens the file anew,
// and flock locks belong to the open file, so two of them exclude each other
// even in the same process. The kernel drops the lock when its holder dies.
// The file stays when released: removing it would let a process lock a new
// file while another still holds the old one.
//
// A sidecar file rather than the database: SQLite takes POSIX record locks on
// the database file, and closing any descriptor of that file would drop them.
// A BEGIN IMMEDIATE guard cannot serve either: goose's own transactions would
// wait for it on the single write connection.
func lockFile(ctx context.Context, path string, log *slog.Logger) (func() error, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	fd := int(f.Fd())
	release := func() error { return f.Close() } // closing the file drops the lock
	err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
	if err == nil {
		return release, nil
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		return nil, errors.Join(fmt.Errorf("lock %s: %w", path, err), f.Close())
	}
	log.Info("waiting for another instance to finish migrating the schema", "lock", path)
	// flock blocks in the kernel and a context cannot interrupt it: it waits
	// in a goroutine, which closes the file itself if nobody is left to take
	// the lock.
	locked := make(chan error) // unbuffered: a lock nobody receives is closed, not kept
	abandoned := make(chan struct{})
	go func() {
		err := flockRetry(fd)
		select {
		case locked <- err:
		case <-abandoned:
			f.Close()
		}
	}()
	select {
	case err := <-locked:
		if err != nil {
			return nil, errors.Join(fmt.Errorf("lock %s: %w", path, err), f.Close())
		}
		return release, nil
	case <-ctx.Done():
		close(abandoned)
		return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
	}
}

// flockRetry waits for an exclusive lock on fd, resuming after signals.
func flockRetry(fd int) error {
	for {
		err := unix.Flock(fd, unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
