package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"testing"
)

func TestNewRefreshToken(t *testing.T) {
	if want := base64.RawURLEncoding.EncodedLen(refreshTokenBytes); refreshTokenLen != want {
		t.Fatalf("refreshTokenLen = %d, want %d", refreshTokenLen, want)
	}
	seen := map[string]bool{}
	for range 1000 {
		tok, hash := newRefreshToken()
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(raw) != 32 {
			t.Fatalf("token %q: %d bytes, %v; want 32 bytes of URL-safe base64", tok, len(raw), err)
		}
		if sum := sha256.Sum256([]byte(tok)); string(sum[:]) != string(hash) {
			t.Fatal("hash is not the SHA-256 of the token")
		}
		if seen[tok] {
			t.Fatal("a token repeated")
		}
		seen[tok] = true
	}
}

func TestSealSuccessor(t *testing.T) {
	presented, _ := newRefreshToken()
	successor, successorHash := newRefreshToken()
	secret := sealSecret([]byte("server secret of at least 32 bytes"))
	keys := []*hmacPool{secret}
	sealed := sealSuccessor(secret, presented, successor)

	got, err := openSuccessor(keys, presented, sealed, successorHash)
	if err != nil || got != successor {
		t.Fatalf("openSuccessor = %q, %v; want the successor", got, err)
	}
	if string(sealed) == successor || len(sealed) < len(successor)+16 {
		t.Errorf("sealed value does not look encrypted and authenticated: %d bytes", len(sealed))
	}
	// The stored lookup hash of the presented token must not open it.
	lookup := hashToken(presented)
	if _, err := openSuccessor(keys, string(lookup[:]), sealed, successorHash); err == nil {
		t.Error("the lookup hash opened the sealed successor")
	}
	other, _ := newRefreshToken()
	if _, err := openSuccessor(keys, other, sealed, successorHash); err == nil {
		t.Error("another token opened the sealed successor")
	}
	tampered := append([]byte(nil), sealed...)
	tampered[len(tampered)-1] ^= 1
	if _, err := openSuccessor(keys, presented, tampered, successorHash); err == nil {
		t.Error("a tampered value opened")
	}
	if _, err := openSuccessor(keys, presented, sealed, make([]byte, 32)); err == nil {
		t.Error("opened against the wrong successor hash")
	}
	if _, err := openSuccessor(keys, presented, sealed[:5], successorHash); err == nil {
		t.Error("a truncated value opened")
	}
	// The database and an old token are not enough: the server's secret is part of the key.
	if _, err := openSuccessor([]*hmacPool{sealSecret([]byte("another server's secret, 32 bytes"))}, presented, sealed, successorHash); err == nil {
		t.Error("opened without the server's secret")
	}
	// A previous secret still opens what it sealed, during a rotation of the secret.
	next := sealSecret([]byte("the next server secret, 32 bytes.."))
	if got, err := openSuccessor([]*hmacPool{next, secret}, presented, sealed, successorHash); err != nil || got != successor {
		t.Errorf("openSuccessor under the previous secret = %q, %v", got, err)
	}
}
