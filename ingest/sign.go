package ingest

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// SignConnect returns a Connect JWT for one request, as the platform signs
// its webhooks and as an app signs its calls to the Connect REST APIs: HS256
// keyed with secret, iss = issuer, iat = now, exp = now + ttl, and the qsh of
// method, path and rawQuery with basePath removed (see CanonicalRequest;
// path and rawQuery as sent, percent-encoded).
//
// issuer is the installation's clientKey when standing in for the platform
// (the simulator, tests) and the app key on outgoing REST calls, where
// basePath is the path of the product's baseUrl (e.g. "/wiki"). Send the
// token as "Authorization: JWT <token>".
func SignConnect(issuer string, secret []byte, method, path, rawQuery, basePath string, ttl time.Duration, now time.Time) (string, error) {
	switch {
	case issuer == "":
		return "", errors.New("ingest: sign connect token: empty issuer")
	case len(secret) == 0:
		return "", errors.New("ingest: sign connect token: empty shared secret")
	case ttl <= 0:
		return "", fmt.Errorf("ingest: sign connect token: ttl %v is not positive", ttl)
	}
	claims := connectClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    issuer,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		QSH: QSH(method, path, rawQuery, basePath),
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("ingest: sign connect token: %w", err)
	}
	return tok, nil
}
