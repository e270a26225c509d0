package models

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mattn/go-sqlite3"
	"gorm.io/gorm"
)

// safeToRetry is an error of the kind pgx marks as failed before anything
// reached the server.
type safeToRetry struct{}

func (safeToRetry) Error() string     { return "write failed before sending" }
func (safeToRetry) SafeToRetry() bool { return true }

func TestIsTransient(t *testing.T) {
	pg := func(severity, code string) error {
		return &pgconn.PgError{Severity: severity, Code: code, Message: "from the server"}
	}
	// A real connect error: nothing listens on a port just freed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, refused := pgconn.Connect(t.Context(), "postgres://nobody@"+addr+"/none?connect_timeout=5")
	var connectErr *pgconn.ConnectError
	if !errors.As(refused, &connectErr) {
		t.Fatalf("connect to a closed port = %T %v, want a *pgconn.ConnectError", refused, refused)
	}
	// A connection that is not made in time: a server that accepts and
	// never answers. Its error also matches context.DeadlineExceeded.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	_, slow := pgconn.Connect(t.Context(), "postgres://nobody@"+silent.Addr().String()+"/none?connect_timeout=1&sslmode=disable")
	if !errors.As(slow, &connectErr) {
		t.Fatalf("connect to a silent server = %T %v, want a *pgconn.ConnectError", slow, slow)
	}

	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"backend terminated (57P01)", fmt.Errorf("find user: %w", pg("FATAL", "57P01")), true},
		{"crash shutdown (57P02)", pg("FATAL", "57P02"), true},
		{"cannot connect now (57P03)", pg("FATAL", "57P03"), true},
		{"idle session timeout (57P05)", pg("FATAL", "57P05"), true},
		{"connection failure (08006)", pg("FATAL", "08006"), true},
		{"unable to connect (08001)", pg("FATAL", "08001"), true},
		{"too many connections (53300)", pg("FATAL", "53300"), true},
		{"serialization failure (40001)", pg("ERROR", "40001"), true},
		{"deadlock (40P01)", pg("ERROR", "40P01"), true},
		{"unique violation (23505)", fmt.Errorf("%w: %w", gorm.ErrDuplicatedKey, pg("ERROR", "23505")), false},
		{"undefined table (42P01)", pg("ERROR", "42P01"), false},
		{"bad password (28P01)", pg("FATAL", "28P01"), false},
		{"statement cancelled (57014)", pg("ERROR", "57014"), false},
		{"no code", pg("ERROR", ""), false},
		{"connection refused", fmt.Errorf("create user: %w", refused), true},
		{"conn closed", fmt.Errorf("rotate: %w", pgconn.ErrConnClosed), true},
		{"safe to retry", safeToRetry{}, true},
		{"unexpected EOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"EOF", io.EOF, true},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true},
		{"bad connection", fmt.Errorf("exec: %w", driver.ErrBadConn), true},
		{"connection done", sql.ErrConnDone, true},
		{"sqlite busy", sqlite3.Error{Code: sqlite3.ErrBusy}, true},
		{"sqlite locked", sqlite3.Error{Code: sqlite3.ErrLocked}, true},
		{"sqlite constraint", sqlite3.Error{Code: sqlite3.ErrConstraint}, false},
		{"caller cancelled", fmt.Errorf("query: %w", context.Canceled), false},
		{"caller deadline", context.DeadlineExceeded, false},
		{"connect timeout", slow, true},
		{"no rows", sql.ErrNoRows, false},
		{"not found", ErrNotFound, false},
		{"conflict", ErrConflict, false},
		{"transaction done", sql.ErrTxDone, false},
		{"anything else", errors.New("boom"), false},
		{"nil", nil, false},
	} {
		if got := isTransient(tc.err); got != tc.want {
			t.Errorf("%s: isTransient(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

func quickRetrier(policy retryPolicy) *retrier {
	return &retrier{policy: policy, log: slog.New(slog.DiscardHandler)}
}

// terminated is what pgx returns for a statement on a connection whose
// server process was terminated.
func terminated() error {
	return &pgconn.PgError{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"}
}

func TestRetryLoop(t *testing.T) {
	policy := retryPolicy{attempts: 5, budget: time.Minute, base: time.Millisecond, maxDelay: 2 * time.Millisecond}

	t.Run("transient failures are retried until success", func(t *testing.T) {
		r := quickRetrier(policy)
		var retries []bool
		err := r.do(t.Context(), "op", func(_ context.Context, retry bool) error {
			retries = append(retries, retry)
			if len(retries) < 3 {
				return terminated()
			}
			return nil
		})
		if err != nil || fmt.Sprint(retries) != "[false true true]" || r.retries.Load() != 2 {
			t.Errorf("do = %v after attempts %v (retry flags), %d retries; want nil after [false true true], 2", err, retries, r.retries.Load())
		}
	})

	t.Run("other errors are not retried", func(t *testing.T) {
		r := quickRetrier(policy)
		calls := 0
		err := r.do(t.Context(), "op", func(context.Context, bool) error { calls++; return ErrConflict })
		if err != ErrConflict || calls != 1 {
			t.Errorf("do = %v after %d calls, want ErrConflict itself after 1", err, calls)
		}
		calls = 0
		err = r.do(t.Context(), "op", func(context.Context, bool) error {
			if calls++; calls == 1 {
				return terminated()
			}
			return ErrNotFound
		})
		if err != ErrNotFound || calls != 2 {
			t.Errorf("do = %v after %d calls, want ErrNotFound itself after 2", err, calls)
		}
	})

	t.Run("a failure that lasts is ErrUnavailable with its cause", func(t *testing.T) {
		r := quickRetrier(policy)
		calls := 0
		err := r.do(t.Context(), "op", func(context.Context, bool) error { calls++; return fmt.Errorf("exec: %w", terminated()) })
		var pgErr *pgconn.PgError
		if !errors.Is(err, ErrUnavailable) || !errors.As(err, &pgErr) || pgErr.Code != "57P01" || calls != policy.attempts ||
			!strings.Contains(err.Error(), "after 5 attempts") {
			t.Errorf("do = %v after %d calls, want ErrUnavailable wrapping 57P01 after %d", err, calls, policy.attempts)
		}
	})

	t.Run("the budget bounds the retries", func(t *testing.T) {
		r := quickRetrier(retryPolicy{attempts: 1 << 20, budget: 100 * time.Millisecond, base: time.Millisecond, maxDelay: 5 * time.Millisecond})
		start := time.Now()
		err := r.do(t.Context(), "op", func(ctx context.Context, retry bool) error {
			if retry {
				if _, ok := ctx.Deadline(); !ok {
					return errors.New("a retry runs without a deadline")
				}
			}
			return io.ErrUnexpectedEOF
		})
		if elapsed := time.Since(start); !errors.Is(err, ErrUnavailable) || !errors.Is(err, io.ErrUnexpectedEOF) || elapsed > 2*time.Second {
			t.Errorf("do = %v after %v, want ErrUnavailable wrapping unexpected EOF within the budget", err, elapsed)
		}
	})

	t.Run("a retry cut by the budget is ErrUnavailable", func(t *testing.T) {
		r := quickRetrier(retryPolicy{attempts: 5, budget: 50 * time.Millisecond, base: time.Millisecond, maxDelay: time.Millisecond})
		err := r.do(t.Context(), "op", func(ctx context.Context, retry bool) error {
			if !retry {
				return terminated()
			}
			<-ctx.Done() // a server that no longer answers
			return fmt.Errorf("timeout: %w", ctx.Err())
		})
		var pgErr *pgconn.PgError
		if !errors.Is(err, ErrUnavailable) || !errors.As(err, &pgErr) || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("do = %v, want ErrUnavailable wrapping the last transient failure only", err)
		}
	})

	t.Run("the caller's context ends the retries", func(t *testing.T) {
		r := quickRetrier(retryPolicy{attempts: 1 << 20, budget: time.Hour, base: time.Millisecond, maxDelay: time.Millisecond})
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		calls := 0
		err := r.do(ctx, "op", func(context.Context, bool) error {
			if calls++; calls == 3 {
				cancel()
			}
			return terminated()
		})
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) || calls != 3 {
			t.Errorf("do = %v after %d calls, want ErrUnavailable and context.Canceled after 3", err, calls)
		}
		calls = 0
		err = r.do(ctx, "op", func(context.Context, bool) error { calls++; return terminated() })
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) || calls != 1 {
			t.Errorf("do with an ended context = %v after %d calls, want ErrUnavailable and context.Canceled after 1", err, calls)
		}
	})

	t.Run("backoff grows, with jitter, up to its cap", func(t *testing.T) {
		p := defaultRetryPolicy()
		for n := 1; n < 40; n++ {
			d := min(p.base<<min(n-1, 16), p.maxDelay)
			if b := p.backoff(n); b < d/2 || b > d {
				t.Errorf("backoff(%d) = %v, want within [%v, %v]", n, b, d/2, d)
			}
		}
	})
}

// stores runs fn over SQLite and, when TEST_POSTGRES_URL is set, PostgreSQL.
func stores(t *testing.T, fn func(t *testing.T, db *DB)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, openTest(t)) })
	t.Run("postgres", func(t *testing.T) {
		db, _, _ := openPostgres(t)
		fn(t, db)
	})
}

// openPostgres opens a DB over a schema of the test's own, its connections
// named by an application_name of their own, which it returns, with an admin
// connection to the same server.
func openPostgres(t *testing.T) (*DB, string, *sql.DB) {
	t.Helper()
	base := os.Getenv("TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("TEST_POSTGRES_URL is not set")
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	name := "t_" + strings.ToLower(rand.Text()[:16])
	if _, err := admin.ExecContext(t.Context(), "CREATE SCHEMA "+name); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() { admin.Exec("DROP SCHEMA " + name + " CASCADE") })
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", name)
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	db, err := Open(t.Context(), u.String(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, name, admin
}

// commitThenFail makes the first attempt of op run, commit, and then report
// the connection lost, as when the server's answer to COMMIT never arrives.
func commitThenFail(db *DB, op string) {
	db.retry.policy = retryPolicy{attempts: 5, budget: 10 * time.Second, base: time.Millisecond, maxDelay: time.Millisecond}
	db.retry.wrap = func(ctx context.Context, name string, n int, run func(context.Context) error) error {
		err := run(ctx)
		if name == op && n == 0 && err == nil {
			return fmt.Errorf("commit: %w", terminated())
		}
		return err
	}
}

func TestRetryAfterAnUnknownCommit(t *testing.T) {
	stores(t, func(t *testing.T, db *DB) {
		ctx := t.Context()
		now := time.Now().UTC()
		count := func(query string, args ...any) int64 {
			t.Helper()
			var n int64
			if err := db.write.WithContext(ctx).Raw(query, args...).Scan(&n).Error; err != nil {
				t.Fatal(err)
			}
			return n
		}

		t.Run("CreateUser", func(t *testing.T) {
			commitThenFail(db, "create user")
			u := User{ID: "u-create", Email: "create@example.com", PasswordHash: "x", CreatedAt: now}
			first := RefreshToken{TokenHash: []byte("create-0"), UserID: u.ID, FamilyID: "f-create", ExpiresAt: now.Add(time.Hour), CreatedAt: now}
			if err := db.CreateUser(ctx, &u, &first); err != nil {
				t.Fatalf("CreateUser whose first commit went through = %v, want success", err)
			}
			if n := count(`SELECT COUNT(*) FROM users WHERE email = ?`, u.Email); n != 1 {
				t.Errorf("%d users stored, want 1", n)
			}
			if n := count(`SELECT COUNT(*) FROM refresh_tokens WHERE id = ? AND token_hash = ?`, first.ID, first.TokenHash); n != 1 {
				t.Errorf("first.ID = %d does not name the stored token", first.ID)
			}
			if db.Retries() == 0 {
				t.Error("nothing was retried")
			}
		})

		t.Run("CreateUser whose email someone else took meanwhile", func(t *testing.T) {
			db.retry.wrap = func(ctx context.Context, op string, n int, run func(context.Context) error) error {
				if n == 0 {
					other := User{ID: "u-other", Email: "taken@example.com", PasswordHash: "x", CreatedAt: now}
					if err := db.write.WithContext(ctx).Create(&other).Error; err != nil {
						return err
					}
					return io.ErrUnexpectedEOF // and our first attempt never reached the server
				}
				return run(ctx)
			}
			u := User{ID: "u-taken", Email: "taken@example.com", PasswordHash: "x", CreatedAt: now}
			first := RefreshToken{TokenHash: []byte("taken-0"), UserID: u.ID, FamilyID: "f-taken", ExpiresAt: now.Add(time.Hour), CreatedAt: now}
			if err := db.CreateUser(ctx, &u, &first); !errors.Is(err, ErrDuplicateEmail) {
				t.Fatalf("CreateUser = %v, want ErrDuplicateEmail", err)
			}
			if n := count(`SELECT COUNT(*) FROM refresh_tokens WHERE user_id = ?`, u.ID); n != 0 {
				t.Errorf("%d tokens of the refused user stored", n)
			}
		})

		t.Run("CreateToken", func(t *testing.T) {
			commitThenFail(db, "create refresh token")
			tok := RefreshToken{TokenHash: []byte("login-0"), UserID: "u-create", FamilyID: "f-login", ExpiresAt: now.Add(time.Hour), CreatedAt: now}
			if err := db.CreateToken(ctx, &tok); err != nil {
				t.Fatalf("CreateToken whose first commit went through = %v, want success", err)
			}
			if n := count(`SELECT COUNT(*) FROM refresh_tokens WHERE id = ? AND token_hash = ?`, tok.ID, tok.TokenHash); n != 1 || tok.ID == 0 {
				t.Errorf("tok.ID = %d does not name the stored token", tok.ID)
			}
		})

		t.Run("CreateToken of a hash another family holds", func(t *testing.T) {
			db.retry.wrap = func(ctx context.Context, op string, n int, run func(context.Context) error) error {
				if n == 0 {
					return io.ErrUnexpectedEOF
				}
				return run(ctx)
			}
			tok := RefreshToken{TokenHash: []byte("login-0"), UserID: "u-create", FamilyID: "f-other", ExpiresAt: now.Add(time.Hour), CreatedAt: now}
			if err := db.CreateToken(ctx, &tok); !errors.Is(err, gorm.ErrDuplicatedKey) {
				t.Fatalf("CreateToken of a taken hash = %v, want a duplicate key error", err)
			}
		})

		t.Run("Rotate", func(t *testing.T) {
			commitThenFail(db, "rotate refresh token")
			var parent RefreshToken
			if err := db.write.WithContext(ctx).Where("token_hash = ?", []byte("login-0")).First(&parent).Error; err != nil {
				t.Fatal(err)
			}
			next := &RefreshToken{TokenHash: []byte("login-1"), UserID: "u-create", FamilyID: "f-login", ParentID: &parent.ID, ExpiresAt: now.Add(time.Hour), CreatedAt: now}
			if err := db.Rotate(ctx, parent.ID, now, []byte("sealed"), next); !errors.Is(err, ErrConflict) {
				t.Fatalf("Rotate whose first commit went through = %v, want ErrConflict", err)
			}
			st, err := db.TokenByHash(ctx, []byte("login-0"))
			if err != nil || st.RotatedAt == nil || string(st.SuccessorHash) != "login-1" || !st.SuccessorActive(now) {
				t.Errorf("the token after Rotate = %+v, %v; want it rotated to the one successor", st, err)
			}
			if n := count(`SELECT COUNT(*) FROM refresh_tokens WHERE parent_id = ?`, parent.ID); n != 1 {
				t.Errorf("%d successors stored, want 1", n)
			}
		})

		t.Run("reads and revocations", func(t *testing.T) {
			db.retry.wrap = func(ctx context.Context, op string, n int, run func(context.Context) error) error {
				if n == 0 {
					return fmt.Errorf("%s: %w", op, terminated())
				}
				return run(ctx)
			}
			before := db.Retries()
			if u, err := db.UserByEmail(ctx, "create@example.com"); err != nil || u.ID != "u-create" {
				t.Errorf("UserByEmail = %+v, %v", u, err)
			}
			if _, err := db.UserByID(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
				t.Errorf("UserByID of nobody = %v, want ErrNotFound", err)
			}
			if _, err := db.TokenByHash(ctx, []byte("login-1")); err != nil {
				t.Errorf("TokenByHash = %v", err)
			}
			if err := db.RevokeFamilyOf(ctx, []byte("login-1"), now); err != nil {
				t.Errorf("RevokeFamilyOf = %v", err)
			}
			if n := count(`SELECT COUNT(*) FROM refresh_tokens WHERE family_id = 'f-login' AND revoked_at IS NULL`); n != 0 {
				t.Errorf("%d tokens of the family left unrevoked", n)
			}
			if got := db.Retries() - before; got < 5 {
				t.Errorf("%d retries, want one per operation at least", got)
			}
		})
	})
}

// TestPostgresDeadPoolCostsOneRetry kills every connection of a full pool,
// as a restart does. The first operation to meet a dead connection retries;
// after that, the pool checks the connections it hands out, so no operation
// meets a dead one again.
func TestPostgresDeadPoolCostsOneRetry(t *testing.T) {
	db, name, admin := openPostgres(t)
	ctx := t.Context()
	pool, err := db.write.DB()
	if err != nil {
		t.Fatal(err)
	}
	const conns = DefaultMaxConns
	// Fill the pool: conns queries at once, each holding its connection
	// until all of them have one. Twice: pgx pings a connection on its first
	// reuse.
	for range 2 {
		var ready, wg sync.WaitGroup
		ready.Add(conns)
		errs := make(chan error, conns)
		for range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := pool.Conn(ctx)
				if err != nil {
					ready.Done()
					errs <- err
					return
				}
				defer c.Close()
				ready.Done()
				ready.Wait()
				if _, err := c.ExecContext(ctx, "SELECT 1"); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	if n := pool.Stats().Idle; n != conns {
		t.Fatalf("%d idle connections, want %d", n, conns)
	}
	var killed int
	if err := admin.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
		FROM pg_stat_activity WHERE application_name = $1`, name).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != conns {
		t.Fatalf("terminated %d connections, want %d", killed, conns)
	}
	for alive := -1; alive != 0; { // until every server process is gone
		if err := admin.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, name).Scan(&alive); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 * conns {
		if _, err := db.TokenByHash(ctx, []byte("nothing")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("TokenByHash %d after the restart = %v, want ErrNotFound", i, err)
		}
	}
	// One when the pool's connections were idle for less than a second
	// (pgx itself pings those idle for longer).
	if n := db.Retries(); n > 1 {
		t.Errorf("%d retries to get through %d dead connections, want 1 at most", n, conns)
	}
}
