package models

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// CreateUser stores a new user and its first refresh token in one transaction,
// so that a registration either fully happens or leaves nothing behind. It
// returns ErrDuplicateEmail when the email is taken.
//
// A transient failure is retried with the same user and token; a retry that
// finds the email taken by this very user (same id) knows that an earlier
// attempt committed, and succeeds.
func (db *DB) CreateUser(ctx context.Context, u *User, first *RefreshToken) error {
	firstID := first.ID
	err := db.retry.do(ctx, "create user", func(ctx context.Context, retry bool) error {
		first.ID = firstID // a failed attempt may have set it
		err := db.write.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			if err := tx.Create(u).Error; err != nil {
				return err
			}
			return tx.Create(first).Error
		})
		if retry && errors.Is(err, gorm.ErrDuplicatedKey) {
			if committed, lookupErr := db.createdUser(ctx, u, first); lookupErr != nil || committed {
				return lookupErr
			}
		}
		return err
	})
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return ErrDuplicateEmail
	}
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	return nil
}

// createdUser reports whether u, with first, is already stored: an earlier
// attempt of CreateUser committed. It sets first.ID then.
func (db *DB) createdUser(ctx context.Context, u *User, first *RefreshToken) (bool, error) {
	var ids []string
	if err := db.write.WithContext(ctx).Model(&User{}).Where("email = ?", u.Email).Limit(1).Pluck("id", &ids).Error; err != nil {
		return false, err
	}
	if len(ids) == 0 || ids[0] != u.ID {
		return false, nil
	}
	return db.createdToken(ctx, first)
}

// UserByEmail returns the user with that (lower-cased) email, or ErrNotFound.
func (db *DB) UserByEmail(ctx context.Context, email string) (User, error) {
	return db.user(ctx, "email = ?", email)
}

// UserByID returns the user with that id, or ErrNotFound.
func (db *DB) UserByID(ctx context.Context, id string) (User, error) {
	return db.user(ctx, "id = ?", id)
}

func (db *DB) user(ctx context.Context, where string, arg any) (User, error) {
	var users []User
	err := db.retry.do(ctx, "find user", func(ctx context.Context, _ bool) error {
		users = nil
		return db.read.WithContext(ctx).Where(where, arg).Limit(1).Find(&users).Error
	})
	if err != nil {
		return User{}, fmt.Errorf("find user: %w", err)
	}
	if len(users) == 0 {
		return User{}, ErrNotFound
	}
	return users[0], nil
}

// CreateToken stores a refresh token.
//
// A transient failure is retried with the same row; a retry that finds its
// hash taken by the same user and family knows that an earlier attempt
// committed, and succeeds.
func (db *DB) CreateToken(ctx context.Context, t *RefreshToken) error {
	id := t.ID
	err := db.retry.do(ctx, "create refresh token", func(ctx context.Context, retry bool) error {
		t.ID = id
		err := db.write.WithContext(ctx).Create(t).Error
		if retry && errors.Is(err, gorm.ErrDuplicatedKey) {
			if committed, lookupErr := db.createdToken(ctx, t); lookupErr != nil || committed {
				return lookupErr
			}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("create refresh token: %w", err)
	}
	return nil
}

// createdToken reports whether t is already stored: a token of the same hash,
// user and family. It sets t.ID then.
func (db *DB) createdToken(ctx context.Context, t *RefreshToken) (bool, error) {
	var rows []RefreshToken
	err := db.write.WithContext(ctx).Select("id", "user_id", "family_id").
		Where("token_hash = ?", t.TokenHash).Limit(1).Find(&rows).Error
	if err != nil || len(rows) == 0 || rows[0].UserID != t.UserID || rows[0].FamilyID != t.FamilyID {
		return false, err
	}
	t.ID = rows[0].ID
	return true, nil
}

// RevokeFamily revokes every token of a family that is not revoked yet.
func (db *DB) RevokeFamily(ctx context.Context, familyID string, now time.Time) error {
	return db.revokeFamily(ctx, `family_id = ?`, now, familyID)
}

// RevokeFamilyOf revokes the family of the token whose SHA-256 is hash; an
// unknown hash changes nothing and is not an error.
func (db *DB) RevokeFamilyOf(ctx context.Context, hash []byte, now time.Time) error {
	return db.revokeFamily(ctx, `family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = ?)`, now, hash)
}

// maxRevokePasses bounds revokeFamily's passes; two suffice unless the family
// keeps being refreshed during the revocation.
const maxRevokePasses = 16

// revokeFamily revokes the family that familyWhere selects, pass after pass
// until a pass finds nothing left. On PostgreSQL an UPDATE sees the rows of
// its snapshot: a rotation that commits while the UPDATE waits for the row it
// rotates inserts a successor that this pass cannot see, and would outlive
// the revocation. The next pass sees it. (SQLite serializes writers, so its
// second pass always finds nothing.) A pass is idempotent, and retried after a
// transient failure; when the failed attempt had committed, the retry is the
// next pass.
func (db *DB) revokeFamily(ctx context.Context, familyWhere string, now time.Time, arg any) error {
	for range maxRevokePasses {
		var revoked int64
		err := db.retry.do(ctx, "revoke family", func(ctx context.Context, _ bool) error {
			res := db.write.WithContext(ctx).Exec(`UPDATE refresh_tokens SET revoked_at = ? WHERE revoked_at IS NULL AND `+familyWhere, now, arg)
			revoked = res.RowsAffected
			return res.Error
		})
		if err != nil {
			return fmt.Errorf("revoke family: %w", err)
		}
		if revoked == 0 {
			return nil
		}
	}
	return fmt.Errorf("revoke family: still refreshed after %d passes", maxRevokePasses)
}

// PruneExpired deletes the refresh tokens that expired before cutoff, in
// batches so that the write lock is never held for long, and returns how many
// it deleted. An expired token can no longer be used; once it is gone, a
// replay of it is an unknown token (401) instead of a detected reuse.
func (db *DB) PruneExpired(ctx context.Context, cutoff time.Time) (int64, error) {
	return db.inBatches(ctx, "prune expired refresh tokens", `DELETE FROM refresh_tokens WHERE id IN
		(SELECT id FROM refresh_tokens WHERE expires_at < ? LIMIT ?)`, cutoff)
}

// EraseSeals erases the sealed successor of every token rotated before
// cutoff, in batches, and returns how many it erased. A seal exists only so
// that a replay within the reuse window gets the same successor; past the
// window it would only be something for a copy of the database to attack.
func (db *DB) EraseSeals(ctx context.Context, cutoff time.Time) (int64, error) {
	return db.inBatches(ctx, "erase sealed successors", `UPDATE refresh_tokens SET successor_sealed = NULL WHERE id IN
		(SELECT id FROM refresh_tokens WHERE successor_sealed IS NOT NULL AND rotated_at < ? LIMIT ?)`, cutoff)
}

// inBatches runs a statement that changes at most its LIMIT rows (the
// statement's last argument, appended here) until a run changes fewer, so
// that no run holds the write lock for long, and returns the rows changed.
func (db *DB) inBatches(ctx context.Context, op, query string, args ...any) (int64, error) {
	const batch = 1000
	args = append(args, batch)
	var total int64
	for {
		var changed int64
		err := db.retry.do(ctx, op, func(ctx context.Context, _ bool) error {
			res := db.write.WithContext(ctx).Exec(query, args...)
			changed = res.RowsAffected
			return res.Error
		})
		if err != nil {
			return total, fmt.Errorf("%s: %w", op, err)
		}
		total += changed
		if changed < batch {
			return total, nil
		}
	}
}
