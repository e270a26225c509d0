package auth

import (
	"crypto/aes"
	"crypto/cipher"
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
const sealKeyPrefix = "authsvc/refresh-successor/v1\x00"

// sealSuccessor encrypts successor under a key derived from presented, so that
// the rotated row can give the successor back to whoever presents the rotated
// token again (a concurrent request on another instance, a retry after a lost
// response) while the server stores no usable token: without the presented
// token, which the server keeps only as a hash, the sealed value is noise.
func sealSuccessor(presented, successor string) []byte {
	aead := successorAEAD(presented)
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(successor)+aead.Overhead())
	_, _ = rand.Read(nonce)
	return aead.Seal(nonce, nonce, []byte(successor), nil)
}

var errUnsealable = errors.New("auth: sealed successor does not open")

// openSuccessor reverses sealSuccessor and checks the result against the
// successor's stored hash in constant time.
func openSuccessor(presented string, sealed, successorHash []byte) (string, error) {
	aead := successorAEAD(presented)
	if len(sealed) < aead.NonceSize() {
		return "", errUnsealable
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], nil)
	if err != nil {
		return "", errUnsealable
	}
	sum := sha256.Sum256(plain)
	if subtle.ConstantTimeCompare(sum[:], successorHash) != 1 {
		return "", errUnsealable
	}
	return string(plain), nil
}

func successorAEAD(presented string) cipher.AEAD {
	key := sha256.Sum256([]byte(sealKeyPrefix + presented))
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err) // unreachable: a 32-byte key is always valid
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err) // unreachable: AES has a 16-byte block
	}
	return aead
}
