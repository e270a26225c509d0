// Package models stores the service's users and refresh tokens, in SQLite
// (the embedded default) or PostgreSQL, behind context-aware methods of DB
// that return this package's sentinel errors, never a driver's.
//
// # gorm or database/sql
//
// One rule decides which a query uses:
//
//   - The refresh path (reading a token's state, the compare-and-swap that
//     rotates it, the insert of its successor) runs database/sql statements
//     prepared once at Open (PostgreSQL's statement for a group of
//     rotations is planned per group instead, see writePostgres). It is the
//     hot path: gorm's reflection and SQL building cost more than these
//     queries, and on SQLite every microsecond the single write connection
//     is held is one that no other rotation can use.
//   - Everything else (registration, login, logout, the maintenance jobs)
//     goes through gorm: a few calls a second at most, where the models'
//     mapping, one placeholder style and gorm's error translation
//     (ErrDuplicatedKey, which becomes ErrDuplicateEmail) are worth more
//     than their cost. SQL that gorm cannot build (an UPDATE with a
//     subquery or a LIMIT) is written out and run by gorm's Exec.
//   - Migrations run on database/sql, which goose needs.
//
// # One schema
//
// The goose migrations in migrations/<dialect> are the schema, the only
// place that creates or changes it. The gorm tags of User and RefreshToken
// only name columns; they create nothing.
package models

import (
	"errors"
	"time"
)

// Sentinel errors of the query layer; driver errors never leave this package
// in their place.
var (
	// ErrNotFound reports that no row matched.
	ErrNotFound = errors.New("models: not found")
	// ErrDuplicateEmail reports that a user with that email already exists.
	ErrDuplicateEmail = errors.New("models: email already registered")
	// ErrConflict reports that a compare-and-swap found the row changed.
	ErrConflict = errors.New("models: row changed concurrently")
)

// User is an account. Email is stored lower-cased, so it is unique regardless of case.
type User struct {
	ID           string    `gorm:"column:id"`
	Email        string    `gorm:"column:email"`
	PasswordHash string    `gorm:"column:password_hash"`
	Name         *string   `gorm:"column:name"`
	CreatedAt    time.Time `gorm:"column:created_at"`
}

// RefreshToken is one refresh token of a family (the chain of tokens that
// descends from one login). Only the SHA-256 of the token is stored. A rotated
// token stays, marked RotatedAt, so that a replay can be recognised: it keeps
// the hash of its successor and the successor itself sealed under a key that
// only the rotated token's holder can derive (see package auth).
type RefreshToken struct {
	ID              int64      `gorm:"column:id"`
	TokenHash       []byte     `gorm:"column:token_hash"`
	UserID          string     `gorm:"column:user_id"`
	FamilyID        string     `gorm:"column:family_id"`
	ParentID        *int64     `gorm:"column:parent_id"`
	ExpiresAt       time.Time  `gorm:"column:expires_at"`
	CreatedAt       time.Time  `gorm:"column:created_at"`
	RotatedAt       *time.Time `gorm:"column:rotated_at"`
	SuccessorHash   []byte     `gorm:"column:successor_hash"`
	SuccessorSealed []byte     `gorm:"column:successor_sealed"`
	RevokedAt       *time.Time `gorm:"column:revoked_at"`
}

// TokenState is a refresh token as the refresh path needs it: the row, its
// owner's email (for the access token), and the state of its successor.
type TokenState struct {
	RefreshToken
	Email              string
	SuccessorExpiresAt *time.Time
	SuccessorRotatedAt *time.Time
	SuccessorRevokedAt *time.Time
}

// SuccessorActive reports whether the token has a successor that is neither
// rotated, revoked nor expired at now.
func (s TokenState) SuccessorActive(now time.Time) bool {
	return s.SuccessorExpiresAt != nil && s.SuccessorRotatedAt == nil && s.SuccessorRevokedAt == nil &&
		now.Before(*s.SuccessorExpiresAt)
}
