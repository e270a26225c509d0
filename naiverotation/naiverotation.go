// Package naiverotation is the bug on purpose: the refresh-token rotation
// this service replaces, kept so that the race can be shown and tested. It
// finds the presented token's row, deletes it, and creates the successor, in
// three statements with nothing to serialize concurrent refreshes of one
// token, as the original NestJS service did. Under a storm of refreshes of one
// token, the callers that found the row before the first caller deleted it
// fail their own delete with gorm's "record not found" (an HTTP 500), and the
// callers that came later get 401: every caller but one is logged out.
//
// Locked adds what the first fix added, a per-token mutex around the same
// three statements: the 500s go, and the waiters find the row gone and get
// 401 instead. Logged out anyway.
//
// Nothing here may ever be reachable from the server: the service's routes
// and their packages never import it (TestServerDoesNotImportIt guards that).
// Only the demo subcommand and the tests that show the race do.
package naiverotation

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/tokenrelay/authsvc/models"
	"github.com/tokenrelay/authsvc/mutex"
)

// ErrInvalidToken is returned by Rotate when the presented token has no row:
// it never existed, or another caller has already rotated it.
var ErrInvalidToken = errors.New("invalid refresh token")

// Store rotates refresh tokens in the service's SQLite database, naively.
type Store struct {
	db *gorm.DB
	// afterFind, when set, runs between the find and the delete; see
	// WithAfterFind.
	afterFind func(ctx context.Context, tokenHash []byte)
}

// Option configures a Store.
type Option func(*Store)

// WithAfterFind makes Rotate call fn with the token's hash after it has found
// the row and before it deletes it. Pairs.Wait is such a fn.
func WithAfterFind(fn func(ctx context.Context, tokenHash []byte)) Option {
	return func(s *Store) { s.afterFind = fn }
}

// Open opens the SQLite file at path, whose schema the service has created,
// on a connection pool of its own.
func Open(path string, opts ...Option) (*Store, error) {
	db, err := gorm.Open(sqlite.Open(path+"?_journal_mode=WAL&_busy_timeout=10000"), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return nil, fmt.Errorf("naiverotation: open %s: %w", path, err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	// Keep the connections of a storm for the next one, as a server's pool
	// does: database/sql keeps 2 idle connections by default, and opening
	// an SQLite connection costs more than a rotation, which would spread
	// the callers of a storm out in time.
	sqlDB.SetMaxIdleConns(256)
	s := &Store{db: db}
	for _, opt := range opts {
		opt(s)
	}
	return s, nil
}

// Close closes the Store's connections.
func (s *Store) Close() error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// Rotate is the original rotation: find the token's row, delete it, create
// its successor, and return the successor. It returns ErrInvalidToken when the
// find finds nothing, and gorm.ErrRecordNotFound when the delete finds
// nothing, which happens when another caller deleted the row after this one
// found it: like Prisma's delete, a delete of a missing row is an error.
func (s *Store) Rotate(ctx context.Context, token string) (string, error) {
	h := sha256.Sum256([]byte(token))
	db := s.db.WithContext(ctx)
	var row models.RefreshToken
	if err := db.Where("token_hash = ?", h[:]).First(&row).Error; errors.Is(err, gorm.ErrRecordNotFound) {
		return "", ErrInvalidToken
	} else if err != nil {
		return "", err
	}
	if s.afterFind != nil {
		s.afterFind(ctx, h[:])
	}
	res := db.Delete(&models.RefreshToken{}, row.ID)
	if res.Error != nil {
		return "", res.Error
	}
	if res.RowsAffected == 0 {
		return "", gorm.ErrRecordNotFound
	}
	next, nextHash := newToken()
	now := time.Now().UTC()
	if err := db.Create(&models.RefreshToken{
		TokenHash: nextHash, UserID: row.UserID, FamilyID: row.FamilyID,
		ExpiresAt: row.ExpiresAt, CreatedAt: now,
	}).Error; err != nil {
		return "", err
	}
	return next, nil
}

// Pairs takes the luck out of the race. In Node every request of a storm
// sends its find before any answer comes back, so all of them find the row;
// in Go an in-process SQLite answers in microseconds, and the first caller
// may delete the row before the second one's request has even been read,
// which hides the bug by luck of timing. Given to WithAfterFind, Pairs.Wait
// makes the first caller that finds a token's row wait, before deleting it,
// until a second caller has found it too (or Grace passes, or its context
// ends): the interleaving of the original bug report. Pairs remembers every
// token it has seen, so it is for demonstrations and tests, not for traffic.
type Pairs struct {
	Grace time.Duration // how long a caller alone waits for a second; 0: until its context ends

	mu    sync.Mutex
	gates map[string]*pairGate
}

type pairGate struct {
	finders int
	both    chan struct{} // closed when the second caller has found the row
}

// Wait is the pairing: see Pairs.
func (p *Pairs) Wait(ctx context.Context, tokenHash []byte) {
	p.mu.Lock()
	if p.gates == nil {
		p.gates = map[string]*pairGate{}
	}
	g := p.gates[string(tokenHash)]
	if g == nil {
		g = &pairGate{both: make(chan struct{})}
		p.gates[string(tokenHash)] = g
	}
	if g.finders++; g.finders == 2 {
		close(g.both)
	}
	p.mu.Unlock()
	var grace <-chan time.Time
	if p.Grace > 0 {
		t := time.NewTimer(p.Grace)
		defer t.Stop()
		grace = t.C
	}
	select {
	case <-g.both:
	case <-grace:
	case <-ctx.Done():
	}
}

// newToken returns a random refresh token and its SHA-256, the form in which
// the service stores tokens.
func newToken() (string, []byte) {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails: crypto/rand panics rather than return an error
	token := base64.RawURLEncoding.EncodeToString(b[:])
	h := sha256.Sum256([]byte(token))
	return token, h[:]
}

// Locked is the per-token mutex fix: Store's rotation, one caller per token
// at a time. The callers that waited find the row gone and get
// ErrInvalidToken.
type Locked struct {
	Store *Store
	Locks *mutex.Memory
}

// Rotate runs Store.Rotate under the token's lock.
func (l Locked) Rotate(ctx context.Context, token string) (string, error) {
	h := sha256.Sum256([]byte(token))
	var next string
	err := l.Locks.WithLock(ctx, base64.RawURLEncoding.EncodeToString(h[:]), func(ctx context.Context) error {
		var err error
		next, err = l.Store.Rotate(ctx, token)
		return err
	})
	return next, err
}
