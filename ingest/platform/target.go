package platform

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/transferd/transferd/ingest/atlassian"
)

// Target is where and as whom a call is made: a ConnectSite or a
// ForgeInstallation.
type Target interface {
	// prefix is the route prefix of the migration API on this target.
	prefix() string
	base() string
	// authorizer returns the Authorization header of one attempt.
	authorizer(c *Client, method string, u *url.URL, basePath string) (func() (string, error), error)
}

// Route prefixes of the migration API.
const (
	ConnectPrefix = "/rest/atlassian-connect/1/migration"
	ForgePrefix   = "/app/migration/forge/v1"
)

// ConnectSite is a Connect tenant: its site's URL (the baseUrl of its
// installed callback) and its shared secret.
type ConnectSite struct {
	BaseURL string
	Secret  []byte
}

func (s ConnectSite) prefix() string { return ConnectPrefix }
func (s ConnectSite) base() string   { return s.BaseURL }

func (s ConnectSite) authorizer(c *Client, method string, u *url.URL, basePath string) (func() (string, error), error) {
	switch {
	case c.AppKey == "":
		return nil, fmt.Errorf("%w: a Connect call needs the app key (the token's iss)", ErrInvalid)
	case len(s.Secret) == 0:
		return nil, fmt.Errorf("%w: the tenant's shared secret is empty", ErrInvalid)
	}
	ttl := c.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	target := u.String()
	return func() (string, error) {
		tok, err := atlassian.SignConnect(method, target, basePath, c.AppKey, s.Secret, ttl, time.Now())
		if err != nil {
			return "", err
		}
		return "JWT " + tok, nil
	}, nil
}

// ForgeInstallation is a Forge installation: the FIT's app.apiBaseUrl
// (empty for ForgeAPIBase) and the app system token of its
// x-forge-oauth-system header.
type ForgeInstallation struct {
	APIBaseURL string
	Token      string
}

func (f ForgeInstallation) prefix() string { return ForgePrefix }

func (f ForgeInstallation) base() string {
	if f.APIBaseURL == "" {
		return ForgeAPIBase
	}
	return f.APIBaseURL
}

func (f ForgeInstallation) authorizer(*Client, string, *url.URL, string) (func() (string, error), error) {
	if f.Token == "" || strings.ContainsAny(f.Token, "\r\n") {
		return nil, errors.Join(ErrInvalid, errors.New("the Forge app system token is empty or malformed"))
	}
	h := "Bearer " + f.Token
	return func() (string, error) { return h, nil }, nil
}
