// Package models holds the GORM models of the service and the context-aware
// queries over them, for SQLite (the embedded default) and PostgreSQL.
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
	ID           string    `gorm:"primaryKey;size:36"`
	Email        string    `gorm:"size:320;not null;uniqueIndex"`
	PasswordHash string    `gorm:"size:60;not null"`
	Name         *string   `gorm:"size:400"`
	CreatedAt    time.Time `gorm:"not null"`
}

// RefreshToken is one refresh token of a family (the chain of tokens that
// descends from one login). Only the SHA-256 of the token is stored. A rotated
// token stays, marked RotatedAt, so that a replay can be recognised: it keeps
// the hash of its successor and the successor itself sealed under a key that
// only the rotated token's holder can derive (see package auth).
type RefreshToken struct {
	ID              int64     `gorm:"primaryKey"`
	TokenHash       []byte    `gorm:"not null;uniqueIndex"`
	UserID          string    `gorm:"size:36;not null;index"`
	FamilyID        string    `gorm:"size:36;not null;index"`
	ParentID        *int64    `gorm:""`
	ExpiresAt       time.Time `gorm:"not null;index"`
	CreatedAt       time.Time `gorm:"not null"`
	RotatedAt       *time.Time
	SuccessorHash   []byte
	SuccessorSealed []byte
	RevokedAt       *time.Time
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
