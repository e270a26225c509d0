package auth

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// golangJWTClaims are the access token's claims as golang-jwt marshals
// them, the way this service signed tokens before signAccess wrote them itself.
type golangJWTClaims struct {
	Subject   string           `json:"sub"`
	Email     string           `json:"email"`
	IssuedAt  *jwt.NumericDate `json:"iat,omitempty"`
	ExpiresAt *jwt.NumericDate `json:"exp,omitempty"`
}

func (c golangJWTClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt, nil }
func (c golangJWTClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt, nil }
func (c golangJWTClaims) GetNotBefore() (*jwt.NumericDate, error)      { return nil, nil }
func (c golangJWTClaims) GetIssuer() (string, error)                   { return "", nil }
func (c golangJWTClaims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c golangJWTClaims) GetAudience() (jwt.ClaimStrings, error)       { return nil, nil }

// signAccess writes the bytes golang-jwt writes for the same claims, in the
// order @nestjs/jwt writes them, whatever the strings hold: the hand-written
// signer only saves allocations.
func TestSignAccessMatchesGolangJWT(t *testing.T) {
	secret := []byte("a-test-secret-of-at-least-32-bytes")
	for _, ttl := range []time.Duration{15 * time.Minute, 90*time.Minute + 500*time.Millisecond, time.Second} {
		s := &Service{signer: newHMACPool(secret), accessTTL: ttl}
		for _, tc := range []struct{ sub, email string }{
			{"0b6c4f2e-8a1d-4c55-9b1e-2f7f0f6f8c11", "alice@example.com"},
			{"id", ""},
			{`quo"te\back`, "a<b>&c@example.com"},
			{"tab\there\x01\x7f", "ünïcödé@exämple.com"},
			{"\u2028\u2029", "bad\xffutf8@example.com"},
			{"emoji 🙂", "o'brien+tag@example.co.uk"},
		} {
			for _, now := range []time.Time{time.Unix(1764460800, 999_999_999), time.Unix(1764460801, 0), time.Unix(1, 1)} {
				iat := now.Truncate(time.Second)
				want, err := jwt.NewWithClaims(jwt.SigningMethodHS256, golangJWTClaims{
					tc.sub, tc.email, jwt.NewNumericDate(iat), jwt.NewNumericDate(iat.Add(ttl)),
				}).SignedString(secret)
				if err != nil {
					t.Fatal(err)
				}
				// The pool hands back states with earlier tokens in their buffers: sign twice.
				for range 2 {
					if got := s.signAccess(tc.sub, tc.email, now); got != want {
						t.Errorf("signAccess(%q, %q, %v, ttl %v) =\n  %s\nwant\n  %s", tc.sub, tc.email, now, ttl, got, want)
					}
				}
			}
		}
	}
}

// BenchmarkSignAccess prices one access token: golang-jwt as this service
// signed them before (NewWithClaims + SignedString), against signAccess.
func BenchmarkSignAccess(b *testing.B) {
	secret := []byte("a-benchmark-secret-of-32-bytes!!")
	now := time.Now()
	const sub, email = "0b6c4f2e-8a1d-4c55-9b1e-2f7f0f6f8c11", "alice@example.com"
	b.Run("golang-jwt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			iat := now.Truncate(time.Second)
			claims := golangJWTClaims{sub, email, jwt.NewNumericDate(iat), jwt.NewNumericDate(iat.Add(15 * time.Minute))}
			if _, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("signAccess", func(b *testing.B) {
		s := &Service{signer: newHMACPool(secret), accessTTL: 15 * time.Minute}
		b.ReportAllocs()
		for b.Loop() {
			s.signAccess(sub, email, now)
		}
	})
}
