package ingest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// secretMap is a SecretSource over a map; a nil value is an installation
// whose secret is empty.
type secretMap map[string][]byte

func (m secretMap) SharedSecret(_ context.Context, clientKey string) ([]byte, error) {
	s, ok := m[clientKey]
	if !ok {
		return nil, fmt.Errorf("tenant %q: %w", clientKey, ErrUnknownTenant)
	}
	return s, nil
}

// failingSecrets is a SecretSource whose store is down.
type failingSecrets struct{}

var errStoreDown = errors.New("tenant store unavailable")

func (failingSecrets) SharedSecret(context.Context, string) ([]byte, error) {
	return nil, errStoreDown
}

// testRSAKey returns the n-th RSA key of the tests (2048 bits), generated
// once per test binary.
func testRSAKey(t testing.TB, n int) *rsa.PrivateKey {
	t.Helper()
	keys, err := rsaKeys()
	if err != nil {
		t.Fatal(err)
	}
	return keys[n]
}

var rsaKeys = sync.OnceValues(func() ([]*rsa.PrivateKey, error) {
	keys := make([]*rsa.PrivateKey, 3)
	for i := range keys {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		keys[i] = k
	}
	return keys, nil
})

// signToken signs claims with method and key, adding header's entries to the
// JOSE header.
func signToken(t testing.TB, method jwt.SigningMethod, key any, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unsignedToken returns header.claims. with an empty signature, for algs
// jwt cannot sign with.
func unsignedToken(header, claims string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims)) + "."
}

// wantAuthCode fails t unless err is an *AuthError with code (or nil when
// code is "").
func wantAuthCode(t testing.TB, err error, code string) {
	t.Helper()
	if code == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var ae *AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v is not an *AuthError, want code %s", err, code)
	}
	if ae.Code != code {
		t.Fatalf("code %s (%v), want %s", ae.Code, err, code)
	}
	if ae.Message == "" {
		t.Fatalf("AuthError %s has no message", ae.Code)
	}
}
