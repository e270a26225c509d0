package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// hs256Header is the first segment of every access token: the base64url of
// the header golang-jwt and @nestjs/jwt write for HS256,
// {"alg":"HS256","typ":"JWT"}. Encoded once here instead of marshalled
// from a map and encoded for each token.
var hs256Header = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// signAccess issues an HS256 access token for the user: header, claims in
// the order @nestjs/jwt writes them ({sub, email} then iat and exp, whole
// seconds), and the signature.
//
// The token is written by hand into a pooled buffer rather than through
// jwt.NewWithClaims(...).SignedString, which marshals the header map and the
// claims struct with reflection, encodes each part into a string of its
// own, joins them and keys a new HMAC: 33 allocations per token against
// one (the returned string). The bytes are the same as golang-jwt's
// (TestSignAccessMatchesGolangJWT compares them): the claims' strings are
// escaped as encoding/json escapes them.
func (s *Service) signAccess(userID, email string, now time.Time) string {
	iat := now.Unix() // NumericDate's whole seconds, as now.Truncate(time.Second)
	st := s.signer.get()
	defer s.signer.put(st)
	claims := append(st.out, `{"sub":`...)
	claims = appendJSONString(claims, userID)
	claims = append(claims, `,"email":`...)
	claims = appendJSONString(claims, email)
	claims = append(claims, `,"iat":`...)
	claims = strconv.AppendInt(claims, iat, 10)
	claims = append(claims, `,"exp":`...)
	claims = strconv.AppendInt(claims, now.Truncate(time.Second).Add(s.accessTTL).Unix(), 10)
	claims = append(claims, '}')
	st.out = claims

	st.in = append(st.in, hs256Header...)
	st.in = append(st.in, '.')
	st.in = base64.RawURLEncoding.AppendEncode(st.in, claims)
	sig := st.sumIn()
	st.in = append(st.in, '.')
	st.in = base64.RawURLEncoding.AppendEncode(st.in, sig)
	return string(st.in)
}

// appendJSONString appends s as a JSON string, byte for byte as
// encoding/json.Marshal writes it (HTML-safe escapes included). Strings of
// printable ASCII that need no escape, every user ID and nearly every email,
// are copied as they are; any other goes through encoding/json itself.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // a string always marshals
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
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
