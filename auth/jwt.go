package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// accessClaims are the claims of an access token, in the order @nestjs/jwt
// writes them: the payload {sub, email}, then iat and exp.
type accessClaims struct {
	Subject   string           `json:"sub"`
	Email     string           `json:"email"`
	IssuedAt  *jwt.NumericDate `json:"iat,omitempty"`
	ExpiresAt *jwt.NumericDate `json:"exp,omitempty"`
}

func (c accessClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt, nil }
func (c accessClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt, nil }
func (c accessClaims) GetNotBefore() (*jwt.NumericDate, error)      { return nil, nil }
func (c accessClaims) GetIssuer() (string, error)                   { return "", nil }
func (c accessClaims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c accessClaims) GetAudience() (jwt.ClaimStrings, error)       { return nil, nil }

// signAccess issues an HS256 access token for the user.
func (s *Service) signAccess(userID, email string, now time.Time) (string, error) {
	iat := now.Truncate(time.Second)
	claims := accessClaims{
		Subject:   userID,
		Email:     email,
		IssuedAt:  jwt.NewNumericDate(iat),
		ExpiresAt: jwt.NewNumericDate(iat.Add(s.accessTTL)),
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(s.secret)
	if err != nil {
		return "", fmt.Errorf("sign access token: %w", err)
	}
	return signed, nil
}

// presentedClaims are the claims of an access token being verified, read as
// jsonwebtoken reads them: exp and nbf must be JSON numbers when present (a
// numeric string is refused, where golang-jwt's NumericDate would take it),
// and iat is not checked at all, so a token that a NestJS app signed with an
// odd iat still verifies.
type presentedClaims struct {
	Subject   string     `json:"sub"`
	ExpiresAt strictDate `json:"exp"`
	NotBefore strictDate `json:"nbf"`
}

func (c presentedClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt.date, nil }
func (c presentedClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore.date, nil }
func (c presentedClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return nil, nil }
func (c presentedClaims) GetIssuer() (string, error)                   { return "", nil }
func (c presentedClaims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c presentedClaims) GetAudience() (jwt.ClaimStrings, error)       { return nil, nil }

// strictDate is a NumericDate that must be a JSON number.
type strictDate struct{ date *jwt.NumericDate }

func (d *strictDate) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || b[0] == '"' || b[0] == 'n' || b[0] == 't' || b[0] == 'f' || b[0] == '[' || b[0] == '{' {
		return fmt.Errorf("invalid date %s: want a number", b)
	}
	d.date = new(jwt.NumericDate)
	return d.date.UnmarshalJSON(b)
}

// verifyAccess checks an access token the way passport-jwt with
// algorithms: ['HS256'] does: the signature, exp and nbf when present, and a
// string sub. Any failure is ErrUnauthorized.
func (s *Service) verifyAccess(token string) (presentedClaims, error) {
	var claims presentedClaims
	_, err := s.parser.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return s.verifyKeys, nil })
	if err != nil {
		return presentedClaims{}, errors.Join(ErrUnauthorized, err)
	}
	if claims.Subject == "" {
		return presentedClaims{}, fmt.Errorf("%w: no subject", ErrUnauthorized)
	}
	return claims, nil
}

func newParser(now func() time.Time) *jwt.Parser {
	return jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), // never none, RS256 or HS512
		jwt.WithTimeFunc(now),
	)
}
