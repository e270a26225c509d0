package auth

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/tokenrelay/authsvc/models"
)

// Refresh consumes a refresh token and returns a new pair.
//
// However many requests present the same token at once, the token rotates
// exactly once and every one of them gets the same new refresh token:
// concurrent callers in this process share one rotation through singleflight;
// the rotation runs under the token's lock, so callers that come later, here
// or on another instance holding a distributed lock, find the token rotated
// and get its successor back while the reuse window lasts. The rotation itself
// is a compare-and-swap in one transaction, so correctness never rests on the
// lock alone.
//
// Refresh returns ErrInvalidToken for an unknown, expired or revoked token,
// ErrTokenReused (after revoking the family) for a replay past the window, an
// error matching mutex.ErrLockTimeout when the lock stays busy, and ctx.Err()
// when ctx ends first; the shared work then goes on for the other callers.
func (s *Service) Refresh(ctx context.Context, refreshToken string) (Tokens, error) {
	hash := hashToken(refreshToken)
	key := hex.EncodeToString(hash[:]) // never the token itself: keys show up in lock monitoring
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
		var out Tokens
		err = s.locks.WithLock(ctx, "refresh_token_"+key, func(ctx context.Context) error {
			var err error
			out, err = s.rotate(ctx, refreshToken, hash[:])
			return err
		})
		return out, err
	})
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

// rotate does one refresh under the token's lock.
func (s *Service) rotate(ctx context.Context, presented string, hash []byte) (Tokens, error) {
	// Two passes at most: a lost compare-and-swap means another instance
	// rotated the token between our read and our write, and the second read
	// then sees it rotated.
	for range 2 {
		now := s.now().UTC()
		st, err := s.store.TokenByHash(ctx, hash)
		switch {
		case errors.Is(err, models.ErrNotFound):
			s.metrics.result("invalid")
			return Tokens{}, ErrInvalidToken
		case err != nil:
			return Tokens{}, err
		case st.RevokedAt != nil:
			s.metrics.result("revoked")
			return Tokens{}, ErrInvalidToken
		case st.RotatedAt != nil:
			return s.replay(ctx, presented, st, now)
		case !now.Before(st.ExpiresAt):
			s.metrics.result("expired")
			return Tokens{}, ErrInvalidToken
		}

		successor, successorHash := newRefreshToken()
		next := &models.RefreshToken{
			TokenHash: successorHash,
			UserID:    st.UserID,
			FamilyID:  st.FamilyID,
			ParentID:  &st.ID,
			ExpiresAt: now.Add(s.refreshTTL),
			CreatedAt: now,
		}
		err = s.store.Rotate(ctx, st.ID, now, sealSuccessor(presented, successor), next)
		if errors.Is(err, models.ErrConflict) {
			continue
		}
		if err != nil {
			return Tokens{}, err
		}
		s.metrics.result("rotated")
		return s.pair(st.UserID, st.Email, successor, now)
	}
	return Tokens{}, fmt.Errorf("rotate refresh token %d times: %w", 2, models.ErrConflict)
}

// replay answers a token that was already rotated: its successor again within
// the reuse window while the successor is unused, otherwise reuse detection.
func (s *Service) replay(ctx context.Context, presented string, st models.TokenState, now time.Time) (Tokens, error) {
	if now.Sub(*st.RotatedAt) < s.reuseWindow && st.SuccessorActive(now) {
		successor, err := openSuccessor(presented, st.SuccessorSealed, st.SuccessorHash)
		if err == nil {
			s.metrics.result("replayed")
			return s.pair(st.UserID, st.Email, successor, now)
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

func (s *Service) pair(userID, email, refresh string, now time.Time) (Tokens, error) {
	access, err := s.signAccess(userID, email, now)
	if err != nil {
		return Tokens{}, err
	}
	return Tokens{AccessToken: access, RefreshToken: refresh}, nil
}
