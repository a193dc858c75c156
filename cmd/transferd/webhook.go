package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/transferd/transferd/ingest"
	"github.com/transferd/transferd/ingest/notification"
)

const webhookAbout = `Register, list or clear the migration webhook of a Connect tenant with
Atlassian's Notification API (PUT/GET /rest/atlassian-connect/1/migration/webhook
on the tenant's cloud site), each request signed with a Connect JWT: iss the
app key, HS256 with the tenant's shared secret, the qsh of the request.

  transferd webhook register --tenant CLIENT_KEY [--endpoint URL…]
  transferd webhook list     --tenant CLIENT_KEY [--json]
  transferd webhook clear    --tenant CLIENT_KEY

The shared secret, the site and the app key come from the tenant registry
(the installed callback, or "transferd tenants add"); --site and --app-key
override the last two. register defaults to --base-url + --connect-path,
where serve takes the events. The descriptor's
cloudAppMigration.migrationWebhookPath ("transferd descriptor") is the
preferred registration: the platform uses a webhook registered here only
when the descriptor has none.

With the embedded NATS, stop serve first (or point --nats-url at the NATS
serve uses). Secrets and tokens are never printed.`

type webhookConfig struct {
	store       storeFlags
	tenant      string
	site        string
	appKey      string
	endpoints   listFlag
	baseURL     string
	connectPath string
	timeout     time.Duration
	asJSON      bool
}

func runWebhook(ctx context.Context, args []string, getenv env, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fs := newFlags("webhook register|list|clear", webhookAbout, stderr)
		if err := parse(fs, args, getenv); err != nil {
			return err
		}
		return usageError("webhook: want register, list or clear")
	}
	sub, args := args[0], args[1:]
	fs := newFlags("webhook "+sub, webhookAbout, stderr)
	var c webhookConfig
	c.store.register(fs)
	fs.StringVar(&c.tenant, "tenant", "", "the tenant's `clientKey` (required)")
	fs.StringVar(&c.site, "site", "", "the tenant's cloud site `URL`, e.g. https://example.atlassian.net/wiki (default: the tenant's stored baseUrl)")
	fs.StringVar(&c.appKey, "app-key", "", "the Connect app `key`, the token's iss (default: the key of the tenant's installed callback)")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "time limit of each request to the site")
	switch sub {
	case "register":
		fs.Var(&c.endpoints, "endpoint", "absolute webhook `URL` to register (repeatable; default: --base-url + --connect-path)")
		fs.StringVar(&c.baseURL, "base-url", "", "the app's public base `URL`, as given to serve (the descriptor's baseUrl)")
		fs.StringVar(&c.connectPath, "connect-path", ingest.DefaultConnectPath, "`path` of serve's Connect migration webhook")
	case "list":
		fs.BoolVar(&c.asJSON, "json", false, `print {"endpoints":[…]} instead of one URL a line`)
	case "clear":
	default:
		return usageError(fmt.Sprintf("webhook: unknown subcommand %q (want register, list or clear)", sub))
	}
	if err := parse(fs, args, getenv); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Sprintf("webhook %s: unexpected argument %q", sub, fs.Arg(0)))
	}
	if c.tenant == "" {
		return usageError("webhook " + sub + ": --tenant is required (the tenant's clientKey; see transferd tenants list)")
	}
	if c.timeout <= 0 {
		return usageError("webhook " + sub + ": --timeout must be positive")
	}
	if sub == "register" && len(c.endpoints) == 0 {
		ep, err := defaultEndpoint(c.baseURL, c.connectPath)
		if err != nil {
			return err
		}
		c.endpoints = listFlag{ep}
	}

	tenant, err := c.lookupTenant(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	if c.site == "" {
		if c.site = tenant.BaseURL; c.site == "" {
			return usageError(fmt.Sprintf("webhook %s: tenant %s has no stored baseUrl: give --site", sub, c.tenant))
		}
	}
	if c.appKey == "" {
		if c.appKey = tenant.AppKey; c.appKey == "" {
			return usageError(fmt.Sprintf("webhook %s: tenant %s has no stored app key: give --app-key (the descriptor's \"key\")", sub, c.tenant))
		}
	}
	client := &notification.Client{
		HTTP: &http.Client{
			Timeout:       c.timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		AppKey: c.appKey,
	}
	secret := []byte(tenant.SharedSecret)

	switch sub {
	case "register":
		for _, e := range c.endpoints {
			if strings.HasPrefix(e, "http://") {
				fmt.Fprintf(stderr, "warning: %s is not HTTPS; the migration platform delivers to HTTPS endpoints\n", e)
			}
		}
		if err := client.Register(ctx, c.site, secret, c.endpoints); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "registered %d endpoint(s) on %s for tenant %s:\n", len(c.endpoints), c.site, c.tenant)
		for _, e := range c.endpoints {
			fmt.Fprintf(stdout, "  %s\n", e)
		}
	case "list":
		endpoints, err := client.List(ctx, c.site, secret)
		if err != nil {
			return err
		}
		if c.asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(notification.Endpoints{Endpoints: endpoints})
		}
		if len(endpoints) == 0 {
			fmt.Fprintf(stderr, "no webhook endpoints registered on %s\n", c.site)
		}
		for _, e := range endpoints {
			fmt.Fprintln(stdout, e)
		}
	case "clear":
		if err := client.Clear(ctx, c.site, secret); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "cleared the webhook endpoints on %s for tenant %s\n", c.site, c.tenant)
	}
	return nil
}

// lookupTenant reads the tenant from the registry and closes the journal
// again: the site may be slow, and nothing else needs NATS.
func (c *webhookConfig) lookupTenant(ctx context.Context, getenv env, stderr io.Writer) (ingest.Tenant, error) {
	log, _ := newLogger(stderr, "warn")
	j, err := c.store.openJournal(ctx, log)
	if err != nil {
		return ingest.Tenant{}, err
	}
	defer j.Close()
	reg, err := c.store.openRegistry(ctx, j, getenv, log)
	if err != nil {
		return ingest.Tenant{}, err
	}
	defer reg.Close()
	t, err := reg.Get(ctx, c.tenant)
	switch {
	case errors.Is(err, ingest.ErrUnknownTenant):
		return t, fmt.Errorf("tenant %s is not in the registry (%s): install the app or run transferd tenants add", c.tenant, c.store.describe())
	case err != nil:
		return t, err
	case !t.Active():
		return t, fmt.Errorf("tenant %s is uninstalled: its shared secret is no longer valid", c.tenant)
	case t.SharedSecret == "":
		return t, fmt.Errorf("tenant %s has no shared secret", c.tenant)
	}
	return t, nil
}

// defaultEndpoint is where serve takes the Connect webhook: the base URL
// and the webhook path, as the platform joins baseUrl and
// migrationWebhookPath.
func defaultEndpoint(baseURL, connectPath string) (string, error) {
	if baseURL == "" {
		return "", usageError("webhook register: give --endpoint, or --base-url (the app's public base URL) to register --base-url + --connect-path")
	}
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", usageError(fmt.Sprintf("--base-url %q: want an absolute http(s) URL without query", baseURL))
	}
	if !strings.HasPrefix(connectPath, "/") {
		return "", usageError(fmt.Sprintf("--connect-path %q: want a path starting with /", connectPath))
	}
	return strings.TrimRight(baseURL, "/") + connectPath, nil
}
