package models

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// hotPath holds the statements of the refresh path, prepared once (but for
// PostgreSQL's group statement, planned per group: see writePostgres). They run
// on database/sql directly: gorm's reflection and SQL building cost more
// than the queries themselves, and every microsecond the single SQLite write
// connection is held is a microsecond no other rotation can use it.
type hotPath struct {
	tokenState *sql.Stmt // read pool
	// SQLite, write pool: a group's transaction runs casRotated and
	// insertSuccessor per rotation, in-process calls with no round trip.
	casRotated      *sql.Stmt
	insertSuccessor *sql.Stmt
	// PostgreSQL: a whole group is one statement (applyGroupQuery), one
	// round trip whatever its size. It is not prepared: see writePostgres.
	write *sql.DB
}

// tokenStateQuery reads a token, its owner's email and its successor's state in one round trip.
const tokenStateQuery = `SELECT t.id, t.user_id, t.family_id, t.expires_at, t.rotated_at, t.successor_hash,
	t.successor_sealed, t.revoked_at, u.email, s.expires_at, s.rotated_at, s.revoked_at
FROM refresh_tokens t
JOIN users u ON u.id = t.user_id
LEFT JOIN refresh_tokens s ON s.token_hash = t.successor_hash
WHERE t.token_hash = ?`

// casRotatedQuery is a rotation's compare-and-swap: it marks the token
// rotated only if it is neither rotated nor revoked yet.
const casRotatedQuery = `UPDATE refresh_tokens SET rotated_at = ?, successor_hash = ?, successor_sealed = ?
WHERE id = ? AND rotated_at IS NULL AND revoked_at IS NULL`

const insertSuccessorQuery = `INSERT INTO refresh_tokens (token_hash, user_id, family_id, parent_id, expires_at, created_at)
VALUES (?, ?, ?, ?, ?, ?)`

// applyGroupQuery applies a group of rotations on PostgreSQL as one
// statement, so one round trip and one implicit transaction: four per
// rotation (BEGIN, UPDATE, INSERT, COMMIT) were most of the database's work
// per refresh. The rotations come as parallel arrays, one element each, so
// that one statement text serves every group size. The UPDATE is each
// rotation's compare-and-swap; the INSERT stores the successor of exactly
// the rotations whose swap won (joined on their position, ord), and the
// statement returns those positions. Being one statement, it is atomic: a
// failure anywhere writes nothing.
//
// The UPDATE sees the snapshot taken when the statement began, so two
// elements with the same token id would both match it (it would update the
// row once, from either): the caller passes each id once (see
// writePostgres). A concurrent transaction that rotates the same row first
// makes the UPDATE wait for it and then re-check its WHERE against the new
// row version, which then fails: the swap is as safe across instances as
// within one.
const applyGroupQuery = `WITH v AS (
	SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::bytea[], $4::bytea[],
		$5::text[], $6::text[], $7::bigint[], $8::timestamptz[], $9::timestamptz[]) WITH ORDINALITY
		AS v(id, now, successor_hash, sealed, user_id, family_id, parent_id, expires_at, created_at, ord)
), swapped AS (
	UPDATE refresh_tokens t SET rotated_at = v.now, successor_hash = v.successor_hash, successor_sealed = v.sealed
	FROM v WHERE t.id = v.id AND t.rotated_at IS NULL AND t.revoked_at IS NULL
	RETURNING v.ord
), inserted AS (
	INSERT INTO refresh_tokens (token_hash, user_id, family_id, parent_id, expires_at, created_at)
	SELECT v.successor_hash, v.user_id, v.family_id, v.parent_id, v.expires_at, v.created_at
	FROM v JOIN swapped USING (ord)
)
SELECT ord FROM swapped`

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
	type prepare struct {
		dst   **sql.Stmt
		pool  *sql.DB
		query string
	}
	stmts := []prepare{{&h.tokenState, read, tokenStateQuery}}
	if db.dialect != "postgres" {
		stmts = append(stmts, prepare{&h.casRotated, write, casRotatedQuery}, prepare{&h.insertSuccessor, write, insertSuccessorQuery})
	}
	for _, p := range stmts {
		if *p.dst, err = p.pool.PrepareContext(ctx, db.rebind(p.query)); err != nil {
			return fmt.Errorf("prepare %q: %w", strings.Fields(p.query)[0], err)
		}
	}
	return nil
}

func (h *hotPath) close() error {
	var errs []error
	for _, s := range []*sql.Stmt{h.tokenState, h.casRotated, h.insertSuccessor} {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	return errors.Join(errs...)
}

// writeSQLite is the committer's groupWriter on SQLite: one transaction, in
// which each rotation's compare-and-swap and insert run in the group's order.
//
// The statements run on a context that cannot end (sqliteContext), and the
// group's own context, which carries its timeout, is checked between them.
func (h *hotPath) writeSQLite(ctx context.Context, group []*rotation) ([]error, time.Duration, error) {
	run := sqliteContext(ctx)
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	tx, err := h.write.BeginTx(run, nil)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback() // a no-op after Commit; on an error or a panic it frees the write connection
	cas, insert := tx.StmtContext(run, h.casRotated), tx.StmtContext(run, h.insertSuccessor)
	results := make([]error, len(group))
	for i, r := range group {
		if results[i], err = applyRotation(run, cas, insert, r); err != nil {
			return nil, 0, err
		}
		if err := ctx.Err(); err != nil { // the group's timeout, checked after each rotation
			return nil, 0, err
		}
	}
	start := time.Now()
	if err := tx.Commit(); err != nil {
		return nil, 0, err
	}
	return results, time.Since(start), nil
}

// sqliteContext returns ctx without its end (its cancellation and
// deadline), for the statements of the refresh path on SQLite. Given a
// context that can end, go-sqlite3 runs every statement and every step of
// a result on a new goroutine and waits for it (to interrupt SQLite if the
// context ends first), and database/sql starts a goroutine per transaction
// and per result set to watch the context: some five goroutines and their
// wake-ups per refresh, for in-process statements that take microseconds.
// Their callers check their own context between statements instead; a
// statement waiting for another process's write lock is bounded by
// busy_timeout all the same.
func sqliteContext(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

// applyRotation runs one rotation's compare-and-swap and, when it wins, the
// insert of the successor. A lost compare-and-swap is the result ErrConflict,
// with nothing written; err is for statements that failed.
func applyRotation(ctx context.Context, cas, insert *sql.Stmt, r *rotation) (result, err error) {
	res, err := cas.ExecContext(ctx, r.now, r.next.TokenHash, r.sealed, r.id)
	if err != nil {
		return nil, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, err
	} else if n != 1 {
		return ErrConflict, nil
	}
	next := r.next
	if _, err := insert.ExecContext(ctx, next.TokenHash, next.UserID, next.FamilyID, next.ParentID, next.ExpiresAt, next.CreatedAt); err != nil {
		return nil, err
	}
	return nil, nil
}

// writePostgres is the committer's groupWriter on PostgreSQL: the group as
// the one statement applyGroupQuery. A token id that appears again in the
// group is left out of the statement and gets ErrConflict: the first
// rotation of that token in the group either won its compare-and-swap or
// found the token already rotated or revoked; either way a second one would
// lose, as it does when the two run one after the other on SQLite.
//
// The statement runs unprepared (pgx's QueryExecModeExec: parse, bind and
// execute in one round trip), so PostgreSQL plans it for the group at hand
// every time. Prepared, it got a generic plan after five runs, made for the
// table as it was then: on a new database, a few hundred rows, where a
// sequential scan joined to the group is the cheapest plan. That plan stayed
// cached while the table grew (until autovacuum's next ANALYZE, a minute or
// more later), and every group scanned the whole table: 18,000 rows per
// group on average in a 20 s run of three instances (pg_stat_user_tables:
// 2,579 sequential scans, 45.9 M rows read), the most of PostgreSQL's CPU.
// Planning each group costs about 0.2 ms, shared by its rotations; the
// lookup stays prepared, as its plan is an index probe at any size.
func (h *hotPath) writePostgres(ctx context.Context, group []*rotation) ([]error, time.Duration, error) {
	n := len(group)
	var (
		ids                 = make([]int64, 0, n)
		nows, expires, made = make([]time.Time, 0, n), make([]time.Time, 0, n), make([]time.Time, 0, n)
		hashes, seals       = make([][]byte, 0, n), make([][]byte, 0, n)
		users, families     = make([]string, 0, n), make([]string, 0, n)
		parents             = make([]*int64, 0, n)
		sent                = make([]int, 0, n) // group index of each element sent
	)
	results := make([]error, n)
	for i, r := range group {
		if slices.Contains(ids, r.id) { // n <= maxGroup: a scan beats a map
			continue
		}
		ids, nows, hashes, seals = append(ids, r.id), append(nows, r.now), append(hashes, r.next.TokenHash), append(seals, r.sealed)
		users, families, parents = append(users, r.next.UserID), append(families, r.next.FamilyID), append(parents, r.next.ParentID)
		expires, made, sent = append(expires, r.next.ExpiresAt), append(made, r.next.CreatedAt), append(sent, i)
	}
	start := time.Now()
	rows, err := h.write.QueryContext(ctx, applyGroupQuery, pgx.QueryExecModeExec, ids, nows, hashes, seals, users, families, parents, expires, made)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	won := make([]bool, n)
	for rows.Next() {
		var ord int
		if err := rows.Scan(&ord); err != nil {
			return nil, 0, err
		}
		won[sent[ord-1]] = true // ord counts from 1
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	took := time.Since(start)
	for i := range group {
		if !won[i] {
			results[i] = ErrConflict
		}
	}
	return results, took, nil
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
		if db.dialect != "postgres" {
			if err := ctx.Err(); err != nil {
				return err
			}
			ctx = sqliteContext(ctx)
		}
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
// Rotations that arrive while another group commits are committed together
// in the next one (group commit, see committer): each is still
// all-or-nothing, and the commit is paid once per group instead of once per
// rotation.
//
// A transient failure is retried. When the failed attempt had committed (its
// COMMIT went out, the answer did not), the retry's compare-and-swap finds the
// token rotated and Rotate returns ErrConflict: a token never gets a second
// successor, and the caller re-reads the token to find it rotated, with next
// as its successor.
func (db *DB) Rotate(ctx context.Context, id int64, now time.Time, sealed []byte, next *RefreshToken) error {
	err := db.retry.do(ctx, "rotate refresh token", func(ctx context.Context, _ bool) error {
		return db.rotations.submit(ctx, &rotation{id: id, now: now, sealed: sealed, next: next})
	})
	if err != nil && !errors.Is(err, ErrConflict) {
		return fmt.Errorf("rotate refresh token %d: %w", id, err)
	}
	return err
}
