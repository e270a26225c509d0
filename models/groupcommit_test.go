package models

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenrelay/authsvc/internal/testpg"
)

// seedTokens stores a user and n live refresh tokens, and returns their ids.
func seedTokens(t *testing.T, db *DB, n int) []int64 {
	t.Helper()
	ctx := t.Context()
	now := time.Now().UTC()
	u := User{ID: "u", Email: "group@example.com", PasswordHash: "x", CreatedAt: now}
	ids := make([]int64, n)
	for i := range n {
		tok := &RefreshToken{TokenHash: fmt.Appendf(nil, "t%d", i), UserID: "u", FamilyID: "f", ExpiresAt: now.Add(time.Hour), CreatedAt: now}
		var err error
		if i == 0 {
			err = db.CreateUser(ctx, &u, tok)
		} else {
			err = db.CreateToken(ctx, tok)
		}
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = tok.ID
	}
	return ids
}

func successor(hash string, parent int64) *RefreshToken {
	now := time.Now().UTC()
	return &RefreshToken{TokenHash: []byte(hash), UserID: "u", FamilyID: "f", ParentID: &parent, ExpiresAt: now.Add(time.Hour), CreatedAt: now}
}

// TestRotationReturnsWhenItsGroupCommitted: a rotation returns as soon as
// its own group has committed, while the next group is still committing; it
// never commits, nor waits for, a group it is not in. The second group's
// commit is held until the first rotation has returned: if that rotation
// were the one committing the second group (a leader that commits until the
// queue is empty), it could never return, and the second group would see
// its own commit's timeout instead.
func TestRotationReturnsWhenItsGroupCommitted(t *testing.T) {
	stores(t, func(t *testing.T, db *DB) {
		ctx := t.Context()
		ids := seedTokens(t, db, 2)

		firstEntered, releaseFirst := make(chan struct{}), make(chan struct{})
		firstReturned := make(chan struct{})
		secondSawFirstReturn := make(chan bool, 1)
		var groups atomic.Int32
		db.rotations.beforeWrite = func(ctx context.Context, group []*rotation) {
			switch groups.Add(1) {
			case 1:
				close(firstEntered)
				<-releaseFirst
			case 2:
				select {
				case <-firstReturned:
					secondSawFirstReturn <- true
				case <-ctx.Done(): // the group's timeout: the first rotation never returned
					secondSawFirstReturn <- false
				}
			}
		}

		var firstErr error
		go func() {
			firstErr = db.Rotate(ctx, ids[0], time.Now().UTC(), nil, successor("a1", ids[0]))
			close(firstReturned)
		}()
		<-firstEntered // the first group is in its commit: the next rotation goes in another group
		second := make(chan error, 1)
		go func() { second <- db.Rotate(ctx, ids[1], time.Now().UTC(), nil, successor("b1", ids[1])) }()
		close(releaseFirst)

		<-firstReturned
		if firstErr != nil {
			t.Errorf("first Rotate = %v", firstErr)
		}
		if !<-secondSawFirstReturn {
			t.Error("the first rotation returned only after the second group's commit: it waited for a group it is not in")
		}
		if err := <-second; err != nil {
			t.Errorf("second Rotate = %v", err)
		}
		if n := groups.Load(); n != 2 {
			t.Errorf("%d groups committed, want 2", n)
		}
	})
}

// TestEveryGroupHasATimeout: a group's commit that never ends (here, held
// until its context ends) fails with a deadline even when the caller's
// context has none, a group of one included; the token is left as it was,
// and the next rotation commits.
func TestEveryGroupHasATimeout(t *testing.T) {
	stores(t, func(t *testing.T, db *DB) {
		ids := seedTokens(t, db, 1)
		db.rotations.timeout = time.Millisecond
		db.rotations.beforeWrite = func(ctx context.Context, _ []*rotation) { <-ctx.Done() }
		err := db.Rotate(context.Background(), ids[0], time.Now().UTC(), nil, successor("stuck", ids[0]))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Rotate whose commit hangs = %v, want context.DeadlineExceeded", err)
		}
		if st, err := db.TokenByHash(t.Context(), []byte("t0")); err != nil || st.RotatedAt != nil {
			t.Fatalf("token after the timed-out rotation: rotated %v, %v; want unrotated", st.RotatedAt, err)
		}

		db.rotations.timeout, db.rotations.beforeWrite = commitTimeout, nil
		if err := db.Rotate(t.Context(), ids[0], time.Now().UTC(), nil, successor("next", ids[0])); err != nil {
			t.Errorf("Rotate after the timeout = %v", err)
		}
	})
}

// TestRotationWhoseCallerLeft: a caller whose context ends while its group
// commits gets its context's error at once; the rotation still commits, so a
// replay finds the token rotated to that successor.
func TestRotationWhoseCallerLeft(t *testing.T) {
	stores(t, func(t *testing.T, db *DB) {
		ids := seedTokens(t, db, 1)
		entered, release := make(chan struct{}), make(chan struct{})
		committed := make(chan struct{})
		db.rotations.beforeWrite = func(context.Context, []*rotation) {
			close(entered)
			<-release
		}
		db.rotations.onCommit = func(CommitStats) { close(committed) }
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- db.Rotate(ctx, ids[0], time.Now().UTC(), nil, successor("late", ids[0])) }()
		<-entered
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Rotate whose caller left = %v, want context.Canceled", err)
		}
		close(release)
		<-committed
		st, err := db.TokenByHash(t.Context(), []byte("t0"))
		if err != nil || string(st.SuccessorHash) != "late" {
			t.Errorf("token after its caller left: successor %q, %v; want the rotation committed", st.SuccessorHash, err)
		}
	})
}

// TestGroupWithTwoRotationsOfOneToken: of two rotations of the same token in
// one group, the first wins and the second gets ErrConflict, with one
// successor stored; this holds for PostgreSQL's single statement too, whose
// UPDATE sees one snapshot for the whole group.
func TestGroupWithTwoRotationsOfOneToken(t *testing.T) {
	stores(t, func(t *testing.T, db *DB) {
		ids := seedTokens(t, db, 3)
		// token 2 is rotated already: both of its rotations in the group lose.
		if err := db.Rotate(t.Context(), ids[2], time.Now().UTC(), nil, successor("c0", ids[2])); err != nil {
			t.Fatal(err)
		}
		group := []*rotation{
			{id: ids[0], now: time.Now().UTC(), next: successor("a1", ids[0])},
			{id: ids[1], now: time.Now().UTC(), next: successor("b1", ids[1])},
			{id: ids[0], now: time.Now().UTC(), next: successor("a2", ids[0])},
			{id: ids[2], now: time.Now().UTC(), next: successor("c1", ids[2])},
			{id: ids[2], now: time.Now().UTC(), next: successor("c2", ids[2])},
		}
		write := db.hot.writeSQLite
		if db.Dialect() == "postgres" {
			write = db.hot.writePostgres
		}
		results, _, err := write(t.Context(), group)
		if err != nil {
			t.Fatal(err)
		}
		want := []error{nil, nil, ErrConflict, ErrConflict, ErrConflict}
		for i := range want {
			if !errors.Is(results[i], want[i]) && results[i] != want[i] {
				t.Errorf("rotation %d = %v, want %v", i, results[i], want[i])
			}
		}
		for _, tc := range []struct {
			token     string
			successor string
		}{{"t0", "a1"}, {"t1", "b1"}, {"t2", "c0"}} {
			st, err := db.TokenByHash(t.Context(), []byte(tc.token))
			if err != nil || string(st.SuccessorHash) != tc.successor {
				t.Errorf("token %s: successor %q, %v; want %q", tc.token, st.SuccessorHash, err, tc.successor)
			}
		}
		for _, lost := range []string{"a2", "c1", "c2"} {
			if _, err := db.TokenByHash(t.Context(), []byte(lost)); !errors.Is(err, ErrNotFound) {
				t.Errorf("the successor %q of a lost rotation was stored (%v)", lost, err)
			}
		}
	})
}

// BenchmarkRotate measures the database's work per refresh on SQLite: 50
// goroutines each chain their own token, a lookup (TokenByHash) and a
// rotation (Rotate, group commit) per step, on the service's settings
// ("tuned") and without the connection pragmas of sqliteConnPragmas
// ("defaults"), to compare in one run; BenchmarkSQLiteFloor is the floor.
func BenchmarkRotate(b *testing.B) {
	for _, tc := range []struct {
		name    string
		pragmas []string
	}{{"defaults", nil}, {"tuned", sqliteConnPragmas}} {
		b.Run(tc.name, func(b *testing.B) {
			saved := sqliteConnPragmas
			sqliteConnPragmas = tc.pragmas
			defer func() { sqliteConnPragmas = saved }()
			ctx := b.Context()
			db, err := Open(ctx, filepath.Join(b.TempDir(), "bench.db"), slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			now := time.Now().UTC()
			token := func(hash []byte) *RefreshToken {
				return &RefreshToken{TokenHash: hash, UserID: "u", FamilyID: "f", ExpiresAt: now.Add(time.Hour), CreatedAt: now}
			}
			if err := db.CreateUser(ctx, &User{ID: "u", Email: "bench@example.com", PasswordHash: "x", CreatedAt: now}, token([]byte("seed"))); err != nil {
				b.Fatal(err)
			}
			sealed := make([]byte, 71)
			b.SetParallelism(25) // 50 goroutines on 2 cores
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				hash := sha256.Sum256([]byte(rand.Text()))
				if err := db.CreateToken(ctx, token(hash[:])); err != nil {
					b.Error(err)
					return
				}
				for pb.Next() {
					st, err := db.TokenByHash(ctx, hash[:])
					if err != nil {
						b.Error(err)
						return
					}
					next := sha256.Sum256([]byte(rand.Text()))
					if err := db.Rotate(ctx, st.ID, now, sealed, token(next[:])); err != nil {
						b.Error(err)
						return
					}
					hash = next
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rotations/s")
		})
	}
}

// TestPostgresGroupsProbeTheIndex: a group's statement finds its tokens
// through the primary key however the table grew since the statement's
// first runs. Twenty groups run on a table of a few rows (a prepared
// statement then has a generic plan cached for that size: a sequential
// scan), then the table grows by 50,000 rows with no ANALYZE, as a new
// database under load does for its first minute, and 50 more groups run.
// None of them may scan the table: PostgreSQL's own counters, read once the
// connections are closed, must show fewer rows read by sequential scans than
// one scan of the grown table would read.
func TestPostgresGroupsProbeTheIndex(t *testing.T) {
	u, schema := testpg.Schema(t)
	ctx := t.Context()
	db, err := Open(ctx, u, slog.New(slog.DiscardHandler), MaxConns(2))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ids := seedTokens(t, db, 70)
	rotate := func(i int) {
		if err := db.Rotate(ctx, ids[i], time.Now().UTC(), nil, successor(fmt.Sprintf("s%d", i), ids[i])); err != nil {
			t.Fatalf("rotation %d: %v", i, err)
		}
	}
	for i := range 20 {
		rotate(i)
	}

	admin, err := sql.Open("pgx", u)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	const grown = 50_000
	if _, err := admin.ExecContext(ctx, `INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at, created_at)
		SELECT sha256(g::text::bytea), 'u', 'f', now() + interval '1 hour', now() FROM generate_series(1, $1) g`, grown); err != nil {
		t.Fatal(err)
	}
	for i := 20; i < 70; i++ {
		rotate(i)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// A backend reports its counters as it exits; wait for all 70 updates.
	var updates, seqRead int64
	for {
		err := admin.QueryRowContext(ctx, `SELECT n_tup_upd, coalesce(seq_tup_read, 0) FROM pg_stat_user_tables
			WHERE schemaname = $1 AND relname = 'refresh_tokens'`, schema).Scan(&updates, &seqRead)
		if err != nil {
			t.Fatal(err)
		}
		if updates >= 70 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("PostgreSQL reported %d of the 70 updates before the test's deadline", updates)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if seqRead >= grown {
		t.Errorf("sequential scans read %d rows of refresh_tokens over 50 groups on a table of %d rows: a group scanned the table instead of probing its primary key", seqRead, grown)
	}
}
