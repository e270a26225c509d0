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
	NotBefore *jwt.NumericDate `json:"nbf,omitempty"`
}

func (c accessClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt, nil }
func (c accessClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt, nil }
func (c accessClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore, nil }
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

// verifyAccess checks an access token the way passport-jwt with
// algorithms: ['HS256'] does: the signature, exp and nbf when present, and a
// string sub. Any failure is ErrUnauthorized.
func (s *Service) verifyAccess(token string) (accessClaims, error) {
	var claims accessClaims
	_, err := s.parser.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return s.secret, nil })
	if err != nil {
		return accessClaims{}, errors.Join(ErrUnauthorized, err)
	}
	if claims.Subject == "" {
		return accessClaims{}, fmt.Errorf("%w: no subject", ErrUnauthorized)
	}
	return claims, nil
}

func newParser(now func() time.Time) *jwt.Parser {
	return jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), // never none, RS256 or HS512
		jwt.WithTimeFunc(now),
	)
}
