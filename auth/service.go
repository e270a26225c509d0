// Package auth issues, verifies and rotates tokens: registration and login with
// bcrypt, HS256 access tokens, and refresh tokens that rotate exactly once
// however many requests present them at the same time.
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sync/singleflight"

	"github.com/tokenrelay/authsvc/models"
)

// Errors of the service. Each maps to one HTTP answer in package handlers.
var (
	ErrEmailTaken         = errors.New("auth: email already registered")
	ErrInvalidCredentials = errors.New("auth: invalid credentials")
	// ErrInvalidToken: the refresh token is unknown, expired or revoked.
	ErrInvalidToken = errors.New("auth: invalid refresh token")
	// ErrTokenReused: a rotated refresh token came back after the reuse
	// window, or after its successor was used; its family is now revoked.
	ErrTokenReused = errors.New("auth: refresh token reused")
	// ErrUnauthorized: the access token is missing, invalid or expired, or its user is gone.
	ErrUnauthorized = errors.New("auth: unauthorized")
)

// Store is the persistence the service needs. *models.DB implements it.
type Store interface {
	CreateUser(ctx context.Context, u *models.User, first *models.RefreshToken) error
	UserByEmail(ctx context.Context, email string) (models.User, error)
	UserByID(ctx context.Context, id string) (models.User, error)
	CreateToken(ctx context.Context, t *models.RefreshToken) error
	TokenByHash(ctx context.Context, hash []byte) (models.TokenState, error)
	Rotate(ctx context.Context, id int64, now time.Time, sealed []byte, next *models.RefreshToken) error
	RevokeFamily(ctx context.Context, familyID string, now time.Time) error
	RevokeFamilyOf(ctx context.Context, hash []byte, now time.Time) error
}

// Locker serializes work per key; *mutex.Memory and *mutex.Redis satisfy it.
// WithLock runs fn at most once, while holding key's lock. An error matching
// mutex.ErrLockTimeout, ErrUnavailable or ErrAbandoned means fn did not run;
// one matching mutex.ErrLeaseLost means fn ran and its answer stands (see
// package mutex for the whole contract).
type Locker interface {
	WithLock(ctx context.Context, key string, fn func(context.Context) error) error
}

// Config holds the service's settings. Zero TTLs and WorkTimeout take the documented defaults.
type Config struct {
	Secret []byte // HS256 key of access tokens; required
	// PreviousSecret, when set, still verifies access tokens and opens
	// sealed successors made under it, and signs nothing: an operator
	// rotates the secret without logging everyone out.
	PreviousSecret []byte
	AccessTTL      time.Duration // access-token lifetime (15m)
	RefreshTTL     time.Duration // refresh-token lifetime (7d)
	ReuseWindow    time.Duration // how long a rotated token still returns its successor (0: not at all)
	// WorkTimeout bounds one shared refresh, lock wait included; it runs
	// detached from the requests that wait for it (30s).
	WorkTimeout time.Duration
	BcryptCost  int              // bcrypt.DefaultCost (10) when zero
	Hasher      PasswordHasher   // bcrypt at BcryptCost when nil
	Hashing     HashingConfig    // bounds the hashes running and waiting
	Now         func() time.Time // time.Now when nil
	Logger      *slog.Logger     // discards when nil
	Metrics     *Metrics         // none when nil
}

// Service is the auth service. It is safe for concurrent use.
type Service struct {
	store  Store
	locks  Locker
	flight singleflight.Group
	parser *jwt.Parser

	signer      *hmacPool              // keyed with Secret: signs access tokens
	verifyKeys  jwt.VerificationKeySet // Secret, then PreviousSecret
	sealKeys    []*hmacPool            // keyed with the seal secrets of the same, in the same order
	accessTTL   time.Duration
	refreshTTL  time.Duration
	reuseWindow time.Duration
	workTimeout time.Duration
	bcryptCost  int
	hashes      *hashQueue
	dummyHash   []byte // compared against for unknown emails, so both login failures cost one bcrypt
	now         func() time.Time
	log         *slog.Logger
	metrics     *Metrics

	joinedFlight func() // set by tests only: called once a Refresh has joined its flight
}

// NewService returns a Service over store, serializing refreshes with locks.
func NewService(store Store, locks Locker, cfg Config) (*Service, error) {
	if len(cfg.Secret) == 0 {
		return nil, errors.New("auth: no JWT secret")
	}
	s := &Service{
		store:       store,
		locks:       locks,
		signer:      newHMACPool(cfg.Secret),
		accessTTL:   orDefault(cfg.AccessTTL, 15*time.Minute),
		refreshTTL:  orDefault(cfg.RefreshTTL, 7*24*time.Hour),
		reuseWindow: max(cfg.ReuseWindow, 0),
		workTimeout: orDefault(cfg.WorkTimeout, 30*time.Second),
		bcryptCost:  cfg.BcryptCost,
		now:         cfg.Now,
		log:         cfg.Logger,
		metrics:     cfg.Metrics,
	}
	if s.bcryptCost == 0 {
		s.bcryptCost = bcrypt.DefaultCost
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "auth")
	s.parser = newParser(s.now)
	for _, secret := range [][]byte{cfg.Secret, cfg.PreviousSecret} {
		if len(secret) > 0 {
			s.verifyKeys.Keys = append(s.verifyKeys.Keys, secret)
			s.sealKeys = append(s.sealKeys, sealSecret(secret))
		}
	}
	hasher := cfg.Hasher
	if hasher == nil {
		hasher = bcryptHasher{cost: s.bcryptCost}
	}
	s.hashes = newHashQueue(hasher, cfg.Hashing, s.metrics)
	var err error
	if s.dummyHash, err = hasher.Hash([]byte("not the password of anyone")); err != nil {
		return nil, fmt.Errorf("auth: bcrypt cost %d: %w", s.bcryptCost, err)
	}
	return s, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return max(d, 0)
}

// Tokens is an access token and a refresh token.
type Tokens struct {
	AccessToken  string
	RefreshToken string
}

// Session is what registration and login return.
type Session struct {
	User models.User
	Tokens
}

// Register creates a user and logs it in. The email is stored lower-cased;
// ErrEmailTaken when it is taken, in any case; ErrBusy when too many
// passwords are being hashed to wait for a turn.
func (s *Service) Register(ctx context.Context, email, password string, name *string) (Session, error) {
	email = strings.ToLower(email)
	// Checked first to spare a bcrypt for a taken email; the unique index
	// still decides when two registrations race.
	if _, err := s.store.UserByEmail(ctx, email); err == nil {
		return Session{}, ErrEmailTaken
	} else if !errors.Is(err, models.ErrNotFound) {
		return Session{}, err
	}
	hash, err := s.hashes.hash(ctx, []byte(password))
	if errors.Is(err, ErrBusy) || ctx.Err() != nil {
		return Session{}, err
	}
	if err != nil {
		return Session{}, fmt.Errorf("hash password: %w", err)
	}
	now := s.now().UTC()
	u := models.User{
		ID:           uuid.NewString(),
		Email:        email,
		PasswordHash: string(hash),
		Name:         name,
		CreatedAt:    now.Truncate(time.Millisecond), // what a JavaScript Date holds
	}
	refresh, row := s.newFamily(u.ID, now)
	if err := s.store.CreateUser(ctx, &u, row); err != nil {
		if errors.Is(err, models.ErrDuplicateEmail) {
			return Session{}, ErrEmailTaken
		}
		return Session{}, err
	}
	return Session{User: u, Tokens: Tokens{AccessToken: s.signAccess(u.ID, u.Email, now), RefreshToken: refresh}}, nil
}

// Login checks the credentials and starts a new token family. Unknown emails
// and wrong passwords both return ErrInvalidCredentials after one bcrypt
// comparison, so neither answer nor timing tells them apart. ErrBusy: too
// many passwords are being checked to wait for a turn.
func (s *Service) Login(ctx context.Context, email, password string) (Session, error) {
	u, err := s.store.UserByEmail(ctx, strings.ToLower(email))
	found := err == nil
	if err != nil && !errors.Is(err, models.ErrNotFound) {
		return Session{}, err
	}
	hash := s.dummyHash
	if found {
		hash = []byte(u.PasswordHash)
	}
	match, err := s.hashes.compare(ctx, hash, []byte(password))
	if err != nil {
		return Session{}, err
	}
	if !match || !found {
		return Session{}, ErrInvalidCredentials
	}
	now := s.now().UTC()
	refresh, row := s.newFamily(u.ID, now)
	if err := s.store.CreateToken(ctx, row); err != nil {
		return Session{}, err
	}
	return Session{User: u, Tokens: Tokens{AccessToken: s.signAccess(u.ID, u.Email, now), RefreshToken: refresh}}, nil
}

// newFamily returns the first refresh token of a new family and its row.
func (s *Service) newFamily(userID string, now time.Time) (string, *models.RefreshToken) {
	token, hash := newRefreshToken()
	return token, &models.RefreshToken{
		TokenHash: hash,
		UserID:    userID,
		FamilyID:  uuid.NewString(),
		ExpiresAt: now.Add(s.refreshTTL),
		CreatedAt: now,
	}
}

// Logout revokes the whole family of the refresh token: every token issued
// since the login it descends from. Unknown, expired and already revoked
// tokens are not an error, so logout is idempotent.
func (s *Service) Logout(ctx context.Context, refreshToken string) error {
	h := hashToken(refreshToken)
	return s.store.RevokeFamilyOf(ctx, h[:], s.now().UTC())
}

// Authenticate verifies an access token and returns its user; any failure,
// a deleted user included, is ErrUnauthorized.
func (s *Service) Authenticate(ctx context.Context, accessToken string) (models.User, error) {
	claims, err := s.verifyAccess(accessToken)
	if err != nil {
		return models.User{}, err
	}
	u, err := s.store.UserByID(ctx, claims.Subject)
	if errors.Is(err, models.ErrNotFound) {
		return models.User{}, fmt.Errorf("%w: user gone", ErrUnauthorized)
	}
	return u, err
}
