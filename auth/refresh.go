package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/tokenrelay/authsvc/models"
	"github.com/tokenrelay/authsvc/mutex"
)

// Refresh consumes a refresh token and returns a new pair.
//
// However many requests present the same token at once, on one instance or
// on several sharing the database, the token rotates exactly once and every
// one of them gets the same new refresh token:
//
//   - concurrent callers in this process share one operation through
//     singleflight;
//   - that operation reads the token first: a token that is already rotated,
//     revoked, expired or unknown is answered from the database at once (its
//     successor within the reuse window), without waiting for any lock;
//   - only a live token is rotated, under its lock, which spares other
//     instances a rotation that would lose; the rotation itself is a
//     compare-and-swap in one transaction, and a lost compare-and-swap is
//     answered with the winner's successor. Correctness rests on the database
//     alone, so when the lock cannot be had (Redis down, a holder that died)
//     the rotation goes on without it.
//
// Refresh returns ErrInvalidToken for an unknown, expired or revoked token,
// ErrTokenReused (after revoking the family) for a replay past the window, an
// error matching mutex.ErrLockTimeout when a live holder keeps the lock past
// its timeout, and ctx.Err() when ctx ends first; the shared work then goes
// on for the other callers.
func (s *Service) Refresh(ctx context.Context, refreshToken string) (Tokens, error) {
	hash := hashToken(refreshToken)
	key := lockKey(hash)
	results := s.flight.DoChan(key, func() (_ any, err error) {
		// singleflight re-panics a panic of DoChan's function in a goroutine
		// of its own, where nothing can recover it: the process would die.
		defer func() {
			if r := recover(); r != nil {
				s.log.ErrorContext(ctx, "refresh panicked", "panic", r)
				err = fmt.Errorf("refresh: panic: %v", r)
			}
		}()
		// Detached from the first caller: its cancellation must not fail the others.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.workTimeout)
		defer cancel()
		return s.refresh(ctx, refreshToken, hash[:], key)
	})
	if s.joinedFlight != nil {
		s.joinedFlight() // a test's barrier: this caller is a member of the flight now
	}
	select {
	case r := <-results:
		s.metrics.shared(r.Shared)
		if r.Err != nil {
			return Tokens{}, r.Err
		}
		return r.Val.(Tokens), nil
	case <-ctx.Done():
		return Tokens{}, ctx.Err()
	}
}

// lockKeyPrefix starts the key of a token's lock.
const lockKeyPrefix = "refresh_token_"

// lockKey is the key of the token's lock, refresh_token_<hex SHA-256>, never
// the token itself: keys show up in lock monitoring. It keys singleflight
// too, one string for both, built in one allocation.
func lockKey(hash [sha256.Size]byte) string {
	var b [len(lockKeyPrefix) + 2*sha256.Size]byte
	copy(b[:], lockKeyPrefix)
	hex.Encode(b[len(lockKeyPrefix):], hash[:])
	return string(b[:])
}

// refresh is the operation that concurrent Refresh calls of one token share.
func (s *Service) refresh(ctx context.Context, presented string, hash []byte, key string) (Tokens, error) {
	st, err := s.store.TokenByHash(ctx, hash)
	if out, done, err := s.settle(ctx, presented, hash, st, err); done {
		return out, err
	}
	var out Tokens
	ran, fnErr := false, error(nil) // fn's own error: WithLock's may add mutex.ErrLeaseLost
	asked := time.Now()
	err = s.locks.WithLock(ctx, key, func(ctx context.Context) (err error) {
		defer func() { fnErr = err }()
		ran = true
		held := time.Now()
		s.metrics.lock("acquired")
		s.metrics.lockWait(held.Sub(asked))
		defer func() { s.metrics.lockHold(time.Since(held)) }()
		if mutex.Contended(ctx) {
			// Another holder went first, here or on another instance, and
			// has most likely rotated the token: read it again rather than
			// lose a compare-and-swap.
			st, err = s.store.TokenByHash(ctx, hash)
			var done bool
			if out, done, err = s.settle(ctx, presented, hash, st, err); done {
				return err
			}
		}
		out, err = s.rotate(ctx, presented, hash, st)
		return err
	})
	if ran {
		if errors.Is(err, mutex.ErrLeaseLost) {
			// Another holder may have overlapped; the compare-and-swap kept
			// the rotation right, so its answer stands.
			s.metrics.lock("lease_lost")
		}
		return out, fnErr
	}
	switch {
	case errors.Is(err, mutex.ErrUnavailable):
		s.metrics.lock("unavailable")
	case errors.Is(err, mutex.ErrAbandoned):
		s.metrics.lock("abandoned")
	case errors.Is(err, mutex.ErrLockTimeout):
		s.metrics.lock("timeout")
		return Tokens{}, err
	default:
		return Tokens{}, err
	}
	// The lock only saves work: go on under the compare-and-swap alone.
	return s.rotate(ctx, presented, hash, st)
}

// settle answers a token that is not live (unknown, revoked, rotated or
// expired) from what TokenByHash returned, with done set; for a live token it
// returns done false.
func (s *Service) settle(ctx context.Context, presented string, hash []byte, st models.TokenState, err error) (_ Tokens, done bool, _ error) {
	now := s.now().UTC()
	switch {
	case errors.Is(err, models.ErrNotFound):
		s.metrics.result("invalid")
		return Tokens{}, true, ErrInvalidToken
	case err != nil:
		return Tokens{}, true, err
	case st.RevokedAt != nil:
		s.metrics.result("revoked")
		return Tokens{}, true, ErrInvalidToken
	case st.RotatedAt != nil:
		out, err := s.replay(ctx, presented, hash, st, now)
		return out, true, err
	case !now.Before(st.ExpiresAt):
		s.metrics.result("expired")
		return Tokens{}, true, ErrInvalidToken
	}
	return Tokens{}, false, nil
}

// rotate rotates the live token st: a compare-and-swap that marks it rotated
// and stores its successor. When the swap is lost (another instance rotated
// it since it was read), the token is read again and settled: the winner's
// successor within the reuse window.
func (s *Service) rotate(ctx context.Context, presented string, hash []byte, st models.TokenState) (Tokens, error) {
	now := s.now().UTC()
	successor, successorHash := newRefreshToken()
	// Signed before the compare-and-swap commits, so that the access token
	// handed out predates any logout: a logout that commits first makes the
	// swap fail, and one that commits after it revokes the successor.
	out := s.pair(st.UserID, st.Email, successor, now)
	next := &models.RefreshToken{
		TokenHash: successorHash,
		UserID:    st.UserID,
		FamilyID:  st.FamilyID,
		ParentID:  &st.ID,
		ExpiresAt: now.Add(s.refreshTTL),
		CreatedAt: now,
	}
	err := s.store.Rotate(ctx, st.ID, now, sealSuccessor(s.sealKeys[0], presented, successor), next)
	if errors.Is(err, models.ErrConflict) {
		st, err := s.store.TokenByHash(ctx, hash)
		if err == nil && st.RotatedAt != nil && st.RevokedAt == nil && bytes.Equal(st.SuccessorHash, successorHash) {
			// The swap that "lost" was our own: a retry after a commit
			// whose answer the connection lost. Ours, whatever the window.
			s.metrics.result("rotated")
			return out, nil
		}
		if out, done, err := s.settle(ctx, presented, hash, st, err); done {
			return out, err
		}
		// Still live after a lost swap: only a rotation rolled back
		// between our read and our write does that.
		return Tokens{}, fmt.Errorf("rotate refresh token %d: %w", st.ID, models.ErrConflict)
	}
	if err != nil {
		return Tokens{}, err
	}
	s.metrics.result("rotated")
	return out, nil
}

// replay answers a token that was already rotated: its successor again within
// the reuse window while the successor is unused, otherwise reuse detection.
func (s *Service) replay(ctx context.Context, presented string, hash []byte, st models.TokenState, now time.Time) (Tokens, error) {
	if now.Sub(*st.RotatedAt) < s.reuseWindow && st.SuccessorActive(now) {
		successor, err := openSuccessor(s.sealKeys, presented, st.SuccessorSealed, st.SuccessorHash)
		if err == nil {
			out := s.pair(st.UserID, st.Email, successor, now)
			// A logout may have committed since st was read. Checked after
			// the access token is signed, so that a pair handed out was
			// minted before any logout of its family.
			again, err := s.store.TokenByHash(ctx, hash)
			if err != nil && !errors.Is(err, models.ErrNotFound) {
				return Tokens{}, err
			}
			if err != nil || again.RevokedAt != nil || again.SuccessorRevokedAt != nil {
				s.metrics.result("revoked")
				return Tokens{}, ErrInvalidToken
			}
			s.metrics.result("replayed")
			return out, nil
		}
		// Only a damaged row gets here; treat it as reuse, the safe side.
		s.log.ErrorContext(ctx, "sealed successor does not open", "token_id", st.ID, "family_id", st.FamilyID)
	}
	if err := s.store.RevokeFamily(ctx, st.FamilyID, now); err != nil {
		return Tokens{}, err
	}
	s.metrics.result("reused")
	s.log.WarnContext(ctx, "refresh token reused: family revoked", "token_id", st.ID, "family_id", st.FamilyID, "user_id", st.UserID)
	return Tokens{}, ErrTokenReused
}

func (s *Service) pair(userID, email, refresh string, now time.Time) Tokens {
	return Tokens{AccessToken: s.signAccess(userID, email, now), RefreshToken: refresh}
}
