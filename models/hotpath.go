package models

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// hotPath holds the statements of the refresh path, prepared once. They run
// on database/sql directly: gorm's reflection and SQL building cost more
// than the queries themselves, and every microsecond the single SQLite write
// connection is held is a microsecond no other rotation can use it.
type hotPath struct {
	tokenState *sql.Stmt // read pool
	rotate     *sql.Stmt // write pool
	insert     *sql.Stmt // write pool
	write      *sql.DB
	group      groupCommit
}

// tokenStateQuery reads a token, its owner's email and its successor's state in one round trip.
const tokenStateQuery = `SELECT t.id, t.user_id, t.family_id, t.expires_at, t.rotated_at, t.successor_hash,
	t.successor_sealed, t.revoked_at, u.email, s.expires_at, s.rotated_at, s.revoked_at
FROM refresh_tokens t
JOIN users u ON u.id = t.user_id
LEFT JOIN refresh_tokens s ON s.token_hash = t.successor_hash
WHERE t.token_hash = ?`

const rotateQuery = `UPDATE refresh_tokens SET rotated_at = ?, successor_hash = ?, successor_sealed = ?
WHERE id = ? AND rotated_at IS NULL AND revoked_at IS NULL`

const insertTokenQuery = `INSERT INTO refresh_tokens (token_hash, user_id, family_id, parent_id, expires_at, created_at)
VALUES (?, ?, ?, ?, ?, ?)`

func (db *DB) prepareHotPath(ctx context.Context) error {
	read, err := db.read.DB()
	if err != nil {
		return err
	}
	write, err := db.write.DB()
	if err != nil {
		return err
	}
	h := &db.hot
	h.write = write
	for _, p := range []struct {
		dst   **sql.Stmt
		pool  *sql.DB
		query string
	}{
		{&h.tokenState, read, tokenStateQuery},
		{&h.rotate, write, rotateQuery},
		{&h.insert, write, insertTokenQuery},
	} {
		if *p.dst, err = p.pool.PrepareContext(ctx, db.rebind(p.query)); err != nil {
			return fmt.Errorf("prepare %q: %w", strings.Fields(p.query)[0], err)
		}
	}
	return nil
}

func (h *hotPath) close() error {
	var errs []error
	for _, s := range []*sql.Stmt{h.tokenState, h.rotate, h.insert} {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	return errors.Join(errs...)
}

// rebind turns ? placeholders into PostgreSQL's $1, $2, ...
func (db *DB) rebind(q string) string {
	if db.dialect != "postgres" {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// TokenByHash returns the refresh token whose SHA-256 is hash, or ErrNotFound.
func (db *DB) TokenByHash(ctx context.Context, hash []byte) (TokenState, error) {
	var st TokenState
	var rotated, revoked, sExpires, sRotated, sRevoked sql.NullTime
	err := db.retry.do(ctx, "find refresh token", func(ctx context.Context, _ bool) error {
		err := db.hot.tokenState.QueryRowContext(ctx, hash).Scan(
			&st.ID, &st.UserID, &st.FamilyID, &st.ExpiresAt, &rotated, &st.SuccessorHash,
			&st.SuccessorSealed, &revoked, &st.Email, &sExpires, &sRotated, &sRevoked)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return TokenState{}, ErrNotFound
	}
	if err != nil {
		return TokenState{}, fmt.Errorf("find refresh token: %w", err)
	}
	st.TokenHash = hash
	st.RotatedAt, st.RevokedAt = timePtr(rotated), timePtr(revoked)
	st.SuccessorExpiresAt, st.SuccessorRotatedAt, st.SuccessorRevokedAt = timePtr(sExpires), timePtr(sRotated), timePtr(sRevoked)
	return st, nil
}

func timePtr(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	return &t.Time
}

// Rotate marks the token id rotated at now, recording its successor's hash and
// sealed value, and stores next, in one transaction. It is a compare-and-swap:
// when the token was rotated or revoked meanwhile, nothing changes and it
// returns ErrConflict.
//
// On SQLite, rotations that arrive while another transaction commits are
// committed together in the next one (group commit): each is still
// all-or-nothing, and the fsync that bounds SQLite's write rate is paid once
// per group instead of once per rotation.
//
// A transient failure is retried. When the failed attempt had committed (its
// COMMIT went out, the answer did not), the retry's compare-and-swap finds the
// token rotated and Rotate returns ErrConflict: a token never gets a second
// successor, and the caller re-reads the token to find it rotated, with next
// as its successor.
func (db *DB) Rotate(ctx context.Context, id int64, now time.Time, sealed []byte, next *RefreshToken) error {
	err := db.retry.do(ctx, "rotate refresh token", func(ctx context.Context, _ bool) error {
		r := rotation{id: id, now: now, sealed: sealed, next: next}
		if db.dialect == "sqlite" {
			return db.hot.group.rotate(ctx, db.hot.write, &db.hot, &r)
		}
		return db.hot.rotateAlone(ctx, db.hot.write, &r)
	})
	if err != nil && !errors.Is(err, ErrConflict) {
		return fmt.Errorf("rotate refresh token %d: %w", id, err)
	}
	return err
}
