package ingest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// ErrSecretKey is wrapped by the error for a sealed value at rest (a
// tenant's shared secret, a Forge credential) that cannot be decrypted:
// sealed with a key that is not configured, for another tenant or
// installation, or tampered with.
var ErrSecretKey = errors.New("ingest: sealed secret cannot be decrypted")

// SecretKeyLen is the length of a secrets key: AES-256.
const SecretKeyLen = 32

// SecretKeys seal tenants' shared secrets at rest with AES-256-GCM, the
// tenant's clientKey as associated data (a sealed secret copied onto
// another tenant does not open). A sealed secret names the id of its key,
// so that keys can be rotated: the first key seals, every key opens.
type SecretKeys struct {
	current string
	aead    map[string]cipher.AEAD
	order   []string
}

// sealedPrefix starts a sealed secret: "v1.<key id>.<base64url(nonce|ciphertext)>".
const sealedPrefix = "v1."

// NewSecretKeys returns keys that seal with current and open with current
// and every old key. Each key is SecretKeyLen random bytes.
func NewSecretKeys(current []byte, old ...[]byte) (*SecretKeys, error) {
	k := &SecretKeys{aead: map[string]cipher.AEAD{}}
	for i, key := range append([][]byte{current}, old...) {
		if len(key) != SecretKeyLen {
			return nil, fmt.Errorf("secrets key %d: %d bytes, want %d", i+1, len(key), SecretKeyLen)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		id := KeyID(key)
		if _, dup := k.aead[id]; dup {
			continue
		}
		if i == 0 {
			k.current = id
		}
		k.aead[id] = aead
		k.order = append(k.order, id)
	}
	return k, nil
}

// ParseSecretKeys parses keys written as base64 (standard or URL, padded
// or not) or hex, separated by commas or new lines; blank lines and lines
// starting with # are skipped. The first key seals, the others only open.
func ParseSecretKeys(text string) (*SecretKeys, error) {
	var keys [][]byte
	for _, line := range strings.FieldsFunc(text, func(r rune) bool { return r == '\n' || r == ',' }) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, err := decodeKey(line)
		if err != nil {
			return nil, fmt.Errorf("secrets key %d: %w", len(keys)+1, err)
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, errors.New("no secrets key")
	}
	return NewSecretKeys(keys[0], keys[1:]...)
}

func decodeKey(s string) ([]byte, error) {
	if b, err := hex.DecodeString(s); err == nil && len(b) == SecretKeyLen {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != SecretKeyLen {
				return nil, fmt.Errorf("%d bytes, want %d", len(b), SecretKeyLen)
			}
			return b, nil
		}
	}
	return nil, errors.New("not base64 or hex")
}

// NewSecretKey returns a fresh random key, base64-encoded.
func NewSecretKey() string {
	b := make([]byte, SecretKeyLen)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// KeyID is the id a sealed secret names its key by: the first 8 bytes of a
// domain-separated SHA-256 of the key, in hex. It says nothing usable about
// the key.
func KeyID(key []byte) string {
	sum := sha256.Sum256(append([]byte("transferd secrets key id\x00"), key...))
	return hex.EncodeToString(sum[:8])
}

// Current is the id of the key that seals.
func (k *SecretKeys) Current() string { return k.current }

// IDs are the ids of every key, the current one first.
func (k *SecretKeys) IDs() []string { return append([]string(nil), k.order...) }

func aad(clientKey string) []byte {
	return append([]byte("transferd tenant secret v1\x00"), clientKey...)
}

// Seal encrypts secret for clientKey with the current key.
func (k *SecretKeys) Seal(clientKey, secret string) string {
	return k.seal(aad(clientKey), secret)
}

// Open decrypts a secret Seal sealed for clientKey, and returns the id of
// the key it was sealed with.
func (k *SecretKeys) Open(clientKey, sealed string) (secret, keyID string, err error) {
	return k.open(aad(clientKey), sealed)
}

// seal encrypts secret with the current key, bound to the associated
// data ad: each kind of secret has its own domain in ad, so that a value
// sealed as one kind, or for one owner, never opens as another.
func (k *SecretKeys) seal(ad []byte, secret string) string {
	aead := k.aead[k.current]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(secret)+aead.Overhead())
	rand.Read(nonce)
	ct := aead.Seal(nonce, nonce, []byte(secret), ad)
	return sealedPrefix + k.current + "." + base64.RawURLEncoding.EncodeToString(ct)
}

func (k *SecretKeys) open(ad []byte, sealed string) (secret, keyID string, err error) {
	rest, ok := strings.CutPrefix(sealed, sealedPrefix)
	id, b64, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return "", "", fmt.Errorf("%w: not a sealed secret", ErrSecretKey)
	}
	aead := k.aead[id]
	if aead == nil {
		return "", id, fmt.Errorf("%w: sealed with key %s, which is not configured (keys %s)", ErrSecretKey, id, strings.Join(k.order, ", "))
	}
	ct, err := base64.RawURLEncoding.DecodeString(b64)
	if err != nil || len(ct) < aead.NonceSize()+aead.Overhead() {
		return "", id, fmt.Errorf("%w: malformed", ErrSecretKey)
	}
	pt, err := aead.Open(nil, ct[:aead.NonceSize()], ct[aead.NonceSize():], ad)
	if err != nil {
		return "", id, fmt.Errorf("%w: key %s does not open it (sealed for another tenant or installation, or tampered with)", ErrSecretKey, id)
	}
	return string(pt), id, nil
}
