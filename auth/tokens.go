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
//
// The token is encoded into an array and hashed from there: two
// allocations (the string and the hash) where EncodeToString and hashing
// []byte(token) made four.
func newRefreshToken() (token string, hash []byte) {
	var b [refreshTokenBytes]byte
	_, _ = rand.Read(b[:]) // never fails: crypto/rand panics rather than return an error
	var enc [refreshTokenLen]byte
	base64.RawURLEncoding.Encode(enc[:], b[:])
	h := sha256.Sum256(enc[:])
	return string(enc[:]), h[:]
}

// refreshTokenLen is the length of a refresh token: 32 bytes in unpadded
// base64 (TestNewRefreshToken checks it against EncodedLen).
const refreshTokenLen = (refreshTokenBytes*8 + 5) / 6

// hashToken is the lookup key of a presented refresh token: its SHA-256.
// Tokens up to 64 bytes, every token this service issues, are copied to the
// stack to be hashed, where []byte(token) of more than 32 bytes would be a
// heap allocation on every refresh.
func hashToken(token string) [sha256.Size]byte {
	var buf [64]byte
	if len(token) <= len(buf) {
		return sha256.Sum256(buf[:copy(buf[:], token)])
	}
	return sha256.Sum256([]byte(token))
}

// sealKeyPrefix separates the sealing key from the lookup hash: both come from
// the token, and knowing one (the database holds the hash) must not give the other.
const sealKeyPrefix = "authsvc/refresh-successor/v2\x00"

// sealSecret derives the server's part of every sealing key from a signing
// secret, so that a copy of the database, even with an old refresh token of
// a chain, opens nothing without the server's secret. It returns HMACs keyed
// with that part, from which successorAEAD derives each token's key.
func sealSecret(secret []byte) *hmacPool {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("authsvc/seal-secret/v1"))
	return newHMACPool(m.Sum(nil))
}

// sealSuccessor encrypts successor under a key derived from the server's
// secret and from presented, so that the rotated row can give the successor
// back to whoever presents the rotated token again (a concurrent request on
// another instance, a retry after a lost response) while the server stores
// no usable token: without both the presented token, which the server keeps
// only as a hash, and the server's secret, the sealed value is noise. The
// seal is erased once the reuse window has passed (models.DB.EraseSeals).
//
// The nonce, the plaintext and the ciphertext share one buffer: the
// successor is copied after the nonce and sealed in place (Seal allows a
// plaintext that starts where its output does).
func sealSuccessor(key *hmacPool, presented, successor string) []byte {
	aead := successorAEAD(key, presented)
	n := aead.NonceSize()
	buf := make([]byte, n+len(successor), n+len(successor)+aead.Overhead())
	_, _ = rand.Read(buf[:n])
	copy(buf[n:], successor)
	return aead.Seal(buf[:n], buf[:n], buf[n:], nil)
}

var errUnsealable = errors.New("auth: sealed successor does not open")

// openSuccessor reverses sealSuccessor under any of keys (the current
// secret's, then a previous one's during a secret rotation) and checks the
// result against the successor's stored hash in constant time.
func openSuccessor(keys []*hmacPool, presented string, sealed, successorHash []byte) (string, error) {
	for _, key := range keys {
		aead := successorAEAD(key, presented)
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

// successorAEAD is AES-256-GCM under HMAC(seal secret, sealKeyPrefix ||
// presented). Only the AES key schedule and the GCM state are new for each
// token; the HMAC comes keyed from key's pool.
func successorAEAD(key *hmacPool, presented string) cipher.AEAD {
	st := key.get()
	defer key.put(st)
	st.in = append(st.in, sealKeyPrefix...)
	st.in = append(st.in, presented...)
	block, err := aes.NewCipher(st.sumIn()) // copies the key into its schedule
	if err != nil {
		panic(err) // unreachable: a 32-byte key is always valid
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err) // unreachable: AES has a 16-byte block
	}
	return aead
}
