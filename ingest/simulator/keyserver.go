package simulator

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/transferd/transferd/ingest/atlassian"
)

// Paths the key server answers on.
const (
	// InstallKeysPath is the prefix of the signed-install keys: the PEM
	// public key of kid is at InstallKeysPath + "/" + kid.
	InstallKeysPath = "/install-keys"
	// JWKSPath is the Forge key set.
	JWKSPath = "/forge/jwks.json"
)

// KeyServer stands in for the platform's key servers: it holds an RSA key
// for Connect signed installs and one for Forge Invocation Tokens, both
// generated in memory when it starts, and publishes their public halves over
// HTTP. A server trusts it when started with the flags of ServeFlags.
type KeyServer struct {
	url        string
	srv        *http.Server
	done       chan struct{}
	installKey *rsa.PrivateKey
	installKID string
	forgeKey   *rsa.PrivateKey
	forgeKID   string
	jwks       []byte
}

// StartKeyServer generates the keys and serves them on addr (host:port;
// port 0 picks a free one, see URL) until Close.
func StartKeyServer(addr string) (*KeyServer, error) { return StartKeyServerFile(addr, "") }

// StartKeyServerFile is StartKeyServer with the keys kept in keysFile (PEM,
// created 0600 when missing), so that successive runs present the same keys
// and a server that cached them needs no new fetch. Empty keysFile
// generates fresh keys in memory.
func StartKeyServerFile(addr, keysFile string) (*KeyServer, error) {
	k := &KeyServer{done: make(chan struct{})}
	var err error
	if k.installKey, k.forgeKey, err = loadOrCreateKeys(keysFile); err != nil {
		return nil, err
	}
	// A kid names its key: a server that cached another key under another
	// kid fetches this one rather than check signatures with the old key.
	k.installKID = "transferd-simulator-install-" + keyID(&k.installKey.PublicKey)
	k.forgeKID = "transferd-simulator-forge-" + keyID(&k.forgeKey.PublicKey)
	k.jwks, err = json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": k.forgeKID,
		"n": b64(k.forgeKey.N.Bytes()),
		"e": b64(big.NewInt(int64(k.forgeKey.E)).Bytes()),
	}}})
	if err != nil {
		return nil, fmt.Errorf("simulator: encode JWKS: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.installKey.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("simulator: encode install key: %w", err)
	}
	installPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})

	mux := http.NewServeMux()
	mux.HandleFunc("GET "+InstallKeysPath+"/{kid}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("kid") != k.installKID {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Write(installPEM)
	})
	mux.HandleFunc("GET "+JWKSPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(k.jwks)
	})

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("simulator: key server: %w", err)
	}
	k.url = "http://" + ln.Addr().String()
	k.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(k.done)
		k.srv.Serve(ln)
	}()
	return k, nil
}

// URL is the key server's base URL, http://host:port.
func (k *KeyServer) URL() string { return k.url }

// InstallKeysURL is the value of serve's --install-keys-url.
func (k *KeyServer) InstallKeysURL() string { return k.url + InstallKeysPath }

// JWKSURL is the value of serve's --forge-jwks-url.
func (k *KeyServer) JWKSURL() string { return k.url + JWKSPath }

// ServeFlags are the serve flags that make a server trust this key server
// for Forge app appARI.
func (k *KeyServer) ServeFlags(appARI string) []string {
	return []string{"--forge-app-ari", appARI, "--forge-jwks-url", k.JWKSURL(), "--install-keys-url", k.InstallKeysURL()}
}

// Close stops serving and waits until the server has stopped.
func (k *KeyServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := k.srv.Shutdown(ctx)
	<-k.done
	if errors.Is(err, context.DeadlineExceeded) {
		return k.srv.Close()
	}
	return err
}

// SignInstall returns the RS256 signed-install JWT Atlassian sends with a
// first installed callback: kid header naming this server's key, iss =
// clientKey, aud = [baseURL], the qsh of the request, and exp.
func (k *KeyServer) SignInstall(clientKey, baseURL, qsh string, ttl time.Duration, now time.Time) (string, error) {
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, atlassian.ConnectClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    clientKey,
			Subject:   clientKey,
			Audience:  jwt.ClaimStrings{baseURL},
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		QSH: qsh,
	})
	tok.Header["kid"] = k.installKID
	s, err := tok.SignedString(k.installKey)
	if err != nil {
		return "", fmt.Errorf("simulator: sign install token: %w", err)
	}
	return s, nil
}

// SignFIT returns a Forge Invocation Token for installationID of app
// appARI, as Forge signs the calls of a remote trigger: RS256 with the
// JWKS key, iss forge/invocation-token, aud = appARI, app.installationId,
// iat, nbf and exp = now + ttl (Forge uses about 25 s).
func (k *KeyServer) SignFIT(appARI, installationID, cloudID string, ttl time.Duration, now time.Time) (string, error) {
	return k.SignFITAt(appARI, installationID, cloudID, "https://api.atlassian.com/ex/confluence/"+cloudID, ttl, now)
}

// SignFITAt is SignFIT with the app.apiBaseUrl the token names (the
// simulator's platform, with Config.PlatformListen).
func (k *KeyServer) SignFITAt(appARI, installationID, cloudID, apiBaseURL string, ttl time.Duration, now time.Time) (string, error) {
	var c atlassian.ForgeClaims
	c.Issuer = atlassian.ForgeIssuer
	c.Audience = jwt.ClaimStrings{appARI}
	c.IssuedAt = jwt.NewNumericDate(now)
	c.NotBefore = jwt.NewNumericDate(now)
	c.ExpiresAt = jwt.NewNumericDate(now.Add(ttl))
	c.App.ID = appARI
	c.App.AppVersion = "1.0.0"
	c.App.InstallationID = installationID
	c.App.APIBaseURL = apiBaseURL
	c.App.Environment.Type = "DEVELOPMENT"
	c.App.Environment.ID = "00000000-0000-4000-8000-00000000e000"
	c.App.Module.Type = "core:trigger"
	c.App.Module.Key = "migration-events"
	c.Context.CloudID = cloudID
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	tok.Header["kid"] = k.forgeKID
	s, err := tok.SignedString(k.forgeKey)
	if err != nil {
		return "", fmt.Errorf("simulator: sign Forge Invocation Token: %w", err)
	}
	return s, nil
}

// keyID is a short fingerprint of a public key.
func keyID(pub *rsa.PublicKey) string {
	sum := sha256.Sum256(x509.MarshalPKCS1PublicKey(pub))
	return hex.EncodeToString(sum[:6])
}

// loadOrCreateKeys reads the install and Forge keys from path, or generates
// them (and writes them there when path is not empty).
func loadOrCreateKeys(path string) (install, forge *rsa.PrivateKey, err error) {
	if path != "" {
		if b, err := os.ReadFile(path); err == nil {
			var keys []*rsa.PrivateKey
			for block, rest := pem.Decode(b); block != nil; block, rest = pem.Decode(rest) {
				k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
				if err != nil {
					return nil, nil, fmt.Errorf("simulator: keys file %s: %w", path, err)
				}
				keys = append(keys, k)
			}
			if len(keys) != 2 {
				return nil, nil, fmt.Errorf("simulator: keys file %s: want 2 RSA keys, found %d (delete it to start afresh)", path, len(keys))
			}
			return keys[0], keys[1], nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("simulator: keys file: %w", err)
		}
	}
	if install, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, nil, fmt.Errorf("simulator: generate install key: %w", err)
	}
	if forge, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, nil, fmt.Errorf("simulator: generate forge key: %w", err)
	}
	if path == "" {
		return install, forge, nil
	}
	var out []byte
	for _, k := range []*rsa.PrivateKey{install, forge} {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})...)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, fmt.Errorf("simulator: keys file: %w", err)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		return nil, nil, fmt.Errorf("simulator: keys file: %w", err)
	}
	return install, forge, nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
