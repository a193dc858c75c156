package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/ingest/atlassian"
)

func TestAuthError(t *testing.T) {
	cause := errors.New("token is expired")
	err := authErr(httperr.CodeTokenExpired, "token has expired", cause)
	var ae *AuthError
	if !errors.As(err, &ae) || ae.Code != httperr.CodeTokenExpired || ae.Message != "token has expired" {
		t.Fatalf("errors.As gave %+v", ae)
	}
	if !errors.Is(err, cause) {
		t.Fatal("AuthError does not unwrap to its cause")
	}
	if got, want := err.Error(), "ingest: token_expired: token has expired: token is expired"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if got := authErr(httperr.CodeMissingToken, "request has no token", nil).Error(); got != "ingest: missing_token: request has no token" {
		t.Fatalf("Error() = %q", got)
	}
}

type exampleTenants map[string][]byte

func (m exampleTenants) SharedSecret(_ context.Context, clientKey string) ([]byte, error) {
	if s, ok := m[clientKey]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("%q: %w", clientKey, ErrUnknownTenant)
}

func ExampleConnectVerifier_Verify() {
	secret := []byte("the tenant's shared secret")
	v, err := NewConnectVerifier(exampleTenants{"jira:acme": secret}, ConnectConfig{BaseURL: "https://app.example.com/base"})
	if err != nil {
		panic(err)
	}

	// What the platform sends: a webhook signed with the tenant's secret.
	tok, err := atlassian.SignConnect("POST", "/base/connect/migration-events", "/base", "jira:acme", secret, time.Minute, time.Now())
	if err != nil {
		panic(err)
	}
	r := httptest.NewRequest("POST", "/base/connect/migration-events", nil)
	r.Header.Set("Authorization", "JWT "+tok)
	clientKey, err := v.Verify(r)
	fmt.Println(clientKey, err)

	// The same token on another path.
	r = httptest.NewRequest("POST", "/base/connect/installed", nil)
	r.Header.Set("Authorization", "JWT "+tok)
	_, err = v.Verify(r)
	var ae *AuthError
	if errors.As(err, &ae) {
		fmt.Println(ae.Code)
	}
	// Output:
	// jira:acme <nil>
	// invalid_qsh
}
