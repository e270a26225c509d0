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
func (db *DB) CreateUser(ctx context.Context, u *User, first *RefreshToken) error {
	err := db.write.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(u).Error; err != nil {
			return err
		}
		return tx.Create(first).Error
	})
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return ErrDuplicateEmail
	}
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	return nil
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
	if err := db.read.WithContext(ctx).Where(where, arg).Limit(1).Find(&users).Error; err != nil {
		return User{}, fmt.Errorf("find user: %w", err)
	}
	if len(users) == 0 {
		return User{}, ErrNotFound
	}
	return users[0], nil
}

// CreateToken stores a refresh token.
func (db *DB) CreateToken(ctx context.Context, t *RefreshToken) error {
	if err := db.write.WithContext(ctx).Create(t).Error; err != nil {
		return fmt.Errorf("create refresh token: %w", err)
	}
	return nil
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
// second pass always finds nothing.)
func (db *DB) revokeFamily(ctx context.Context, familyWhere string, now time.Time, arg any) error {
	for range maxRevokePasses {
		res := db.write.WithContext(ctx).Exec(`UPDATE refresh_tokens SET revoked_at = ? WHERE revoked_at IS NULL AND `+familyWhere, now, arg)
		if res.Error != nil {
			return fmt.Errorf("revoke family: %w", res.Error)
		}
		if res.RowsAffected == 0 {
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
	const batch = 1000
	var total int64
	for {
		res := db.write.WithContext(ctx).Exec(`DELETE FROM refresh_tokens WHERE id IN
			(SELECT id FROM refresh_tokens WHERE expires_at < ? LIMIT ?)`, cutoff, batch)
		if res.Error != nil {
			return total, fmt.Errorf("prune expired refresh tokens: %w", res.Error)
		}
		total += res.RowsAffected
		if res.RowsAffected < batch {
			return total, nil
		}
	}
}
