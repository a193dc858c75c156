package notification_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/transferd/transferd/ingest/notification"
)

// A Connect app registers its migration webhook on a tenant's Confluence
// site, with the shared secret the site sent in its installed callback.
func ExampleClient_Register() {
	c := &notification.Client{
		HTTP:   &http.Client{Timeout: 10 * time.Second},
		AppKey: "com.example.migration-app",
	}
	site := "https://example.atlassian.net/wiki" // the installed callback's baseUrl
	secret := []byte("the tenant's sharedSecret")
	err := c.Register(context.TODO(), site, secret, []string{"https://app.example.com/connect/migration-events"})
	if err != nil {
		fmt.Println(err)
	}
}
