package auth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
)

// refreshTokenBytes is the entropy of a refresh token: 256 bits.
const refreshTokenBytes = 32

// newRefreshToken returns a fresh opaque refresh token (base64url, 43
// characters) and the SHA-256 under which it is stored.
func newRefreshToken() (token string, hash []byte) {
	var b [refreshTokenBytes]byte
	_, _ = rand.Read(b[:]) // never fails: crypto/rand panics rather than return an error
	token = base64.RawURLEncoding.EncodeToString(b[:])
	h := sha256.Sum256([]byte(token))
	return token, h[:]
}

// hashToken is the lookup key of a presented refresh token: its SHA-256.
func hashToken(token string) [sha256.Size]byte { return sha256.Sum256([]byte(token)) }

// sealKeyPrefix separates the sealing key from the lookup hash: both come from
// the token, and knowing one (the database holds the hash) must not give the other.
const sealKeyPrefix = "authsvc/refresh-successor/v2\x00"

// sealSecret derives the server's part of every sealing key from a signing
// secret, so that a copy of the database, even with an old refresh token of
// a chain, opens nothing without the server's secret.
func sealSecret(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("authsvc/seal-secret/v1"))
	return m.Sum(nil)
}

// sealSuccessor encrypts successor under a key derived from the server's
// secret and from presented, so that the rotated row can give the successor
// back to whoever presents the rotated token again (a concurrent request on
// another instance, a retry after a lost response) while the server stores
// no usable token: without both the presented token, which the server keeps
// only as a hash, and the server's secret, the sealed value is noise. The
// seal is erased once the reuse window has passed (models.DB.EraseSeals).
func sealSuccessor(secret []byte, presented, successor string) []byte {
	aead := successorAEAD(secret, presented)
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(successor)+aead.Overhead())
	_, _ = rand.Read(nonce)
	return aead.Seal(nonce, nonce, []byte(successor), nil)
}

var errUnsealable = errors.New("auth: sealed successor does not open")

// openSuccessor reverses sealSuccessor under any of secrets (the current
// one, then a previous one during a secret rotation) and checks the result
// against the successor's stored hash in constant time.
func openSuccessor(secrets [][]byte, presented string, sealed, successorHash []byte) (string, error) {
	for _, secret := range secrets {
		aead := successorAEAD(secret, presented)
		if len(sealed) < aead.NonceSize() {
			return "", errUnsealable
		}
		plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], nil)
		if err != nil {
			continue
		}
		sum := sha256.Sum256(plain)
		if subtle.ConstantTimeCompare(sum[:], successorHash) != 1 {
			return "", errUnsealable
		}
		return string(plain), nil
	}
	return "", errUnsealable
}

func successorAEAD(secret []byte, presented string) cipher.AEAD {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(sealKeyPrefix))
	m.Write([]byte(presented))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		panic(err) // unreachable: a 32-byte key is always valid
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err) // unreachable: AES has a 16-byte block
	}
	return aead
}
