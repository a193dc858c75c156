package atlassian

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// SignConnect returns the Connect JWT of one request, as the platform signs
// its webhooks and an app its calls to a site's REST APIs: HS256 keyed with
// secret, iss = issuer, iat = now, exp = now + ttl, and the qsh of method
// and target relative to baseURL. Send it as "Authorization: JWT <token>".
//
// target is the request's URL as it is sent, absolute
// ("https://acme.atlassian.net/wiki/rest/…?a=1") or its path and query
// ("/wiki/rest/…?a=1"), percent-encoded; the qsh covers its escaped path
// and raw query, which is what net/http sends for the same URL. baseURL is
// the baseUrl the path is relative to: the site's (its URL, e.g.
// https://acme.atlassian.net/wiki) when calling the platform as the app,
// the app's when standing in for the platform. Only its path counts, so a
// bare path ("/wiki", or "" for a host's root) will do.
//
// issuer is the app key on calls to the platform and the installation's
// clientKey when standing in for it (the simulator, tests). SignConnect
// fails on an empty issuer or secret, a ttl that is not positive, or a
// target or baseURL that is not a URL.
func SignConnect(method, target, baseURL, issuer string, secret []byte, ttl time.Duration, now time.Time) (string, error) {
	switch {
	case issuer == "":
		return "", errors.New("atlassian: sign connect token: empty issuer")
	case len(secret) == 0:
		return "", errors.New("atlassian: sign connect token: empty shared secret")
	case ttl <= 0:
		return "", fmt.Errorf("atlassian: sign connect token: ttl %v is not positive", ttl)
	}
	u, err := url.Parse(target)
	if err != nil {
		return "", fmt.Errorf("atlassian: sign connect token: request URL: %w", err)
	}
	base, err := url.Parse(baseURL)
	if err != nil {
		return "", fmt.Errorf("atlassian: sign connect token: base URL: %w", err)
	}
	claims := ConnectClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    issuer,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		QSH: QSH(method, u.EscapedPath(), u.RawQuery, base.EscapedPath()),
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("atlassian: sign connect token: %w", err)
	}
	return tok, nil
}
