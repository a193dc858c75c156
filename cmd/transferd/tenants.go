package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/transferd/transferd/ingest"
)

const tenantsAbout = `Manage Connect tenants (installations) without the lifecycle callback.

  transferd tenants add --client-key KEY --shared-secret-file FILE
                        [--tenant-base-url URL] [--product-type jira|confluence] [--force]
  transferd tenants list [--json]
  transferd tenants remove --client-key KEY
  transferd tenants rekey

Shared secrets are stored sealed with the secrets key (--secrets-key-file or
TRANSFERD_SECRETS_KEY; see docs/security.md). To rotate it, put the new key
first in the key file and keep the old one below it, run tenants rekey (serve
also does on start), then drop the old key.

add checks what it stores: the shared secret has at least 32 bytes (an
HS256 key), the base URL is https (http only on loopback, for tests), the
product type is jira or confluence. It refuses to replace a registered
tenant unless --force is given.

Tenants live in the NATS KV bucket transferd_tenants, shared by every
instance on the same NATS. With the embedded default, stop serve first (or
point --nats-url at the NATS serve uses). Secrets are never printed.`

func runTenants(ctx context.Context, args []string, getenv env, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fs := newFlags("tenants add|list|remove|rekey", tenantsAbout, stderr)
		if err := parse(fs, args, getenv); err != nil {
			return err
		}
		return usageError("tenants: want add, list, remove or rekey")
	}
	sub, args := args[0], args[1:]
	fs := newFlags("tenants "+sub, tenantsAbout, stderr)
	var store storeFlags
	store.register(fs)
	var clientKey, secret, secretFile, baseURL, product string
	var asJSON, force bool
	switch sub {
	case "add":
		fs.StringVar(&clientKey, "client-key", "", "the installation's `clientKey` (required)")
		fs.StringVar(&secret, "shared-secret", "", "the installation's shared `secret` (prefer --shared-secret-file: arguments are visible to other users)")
		fs.StringVar(&secretFile, "shared-secret-file", "", "`file` holding the shared secret; - reads standard input")
		fs.StringVar(&baseURL, "tenant-base-url", "", "the tenant's product `URL`, e.g. https://example.atlassian.net")
		fs.StringVar(&product, "product-type", "", "the tenant's product `type`: jira or confluence")
		fs.BoolVar(&force, "force", false, "replace a tenant already registered under --client-key")
	case "list":
		fs.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	case "remove":
		fs.StringVar(&clientKey, "client-key", "", "the installation's `clientKey` (required)")
	case "rekey":
	default:
		return usageError(fmt.Sprintf("tenants: unknown subcommand %q (want add, list, remove or rekey)", sub))
	}
	if err := parse(fs, args, getenv); err != nil {
		return err
	}
	if sub != "list" && sub != "rekey" && clientKey == "" {
		return usageError("tenants " + sub + ": --client-key is required")
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Sprintf("tenants %s: unexpected argument %q", sub, fs.Arg(0)))
	}
	if sub == "add" {
		var err error
		if secret, err = readSecret(secret, secretFile, stdin); err != nil {
			return err
		}
		if err := checkTenant(secret, baseURL, product); err != nil {
			return err
		}
	}

	log, _ := newLogger(stderr, "warn")
	j, err := store.openJournal(ctx, log)
	if err != nil {
		return err
	}
	defer j.Close()
	reg, err := store.openRegistry(ctx, j, getenv, log)
	if err != nil {
		return err
	}
	defer reg.Close()

	switch sub {
	case "add":
		old, err := reg.Get(ctx, clientKey)
		switch {
		case err == nil && !force:
			state := "installed"
			if !old.Active() {
				state = "uninstalled"
			}
			return usageError(fmt.Sprintf("tenants add: tenant %s is already registered (%s since %s): give --force to replace it",
				clientKey, state, old.InstalledAt.Format(time.RFC3339)))
		case err != nil && !errors.Is(err, ingest.ErrUnknownTenant):
			return err
		}
		t := ingest.Tenant{ClientKey: clientKey, SharedSecret: secret, BaseURL: baseURL, ProductType: product, InstalledAt: time.Now().UTC()}
		if err := reg.Put(ctx, t); err != nil {
			return err
		}
		verb := "added"
		if err == nil {
			verb = "replaced"
		}
		fmt.Fprintf(stdout, "tenant %s %s\n", clientKey, verb)
	case "remove":
		if err := reg.Remove(ctx, clientKey); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "tenant %s removed\n", clientKey)
	case "list":
		return printTenants(stdout, reg.List(), asJSON)
	case "rekey":
		n, err := reg.Rekey(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d tenants' secrets sealed again with key %s\n", n, reg.KeyID())
	}
	return nil
}

func readSecret(secret, file string, stdin io.Reader) (string, error) {
	switch {
	case secret != "" && file != "":
		return "", usageError("give --shared-secret or --shared-secret-file, not both")
	case file == "-":
		b, err := io.ReadAll(io.LimitReader(stdin, 4096))
		if err != nil {
			return "", err
		}
		secret = string(b)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		secret = string(b)
	}
	secret = strings.TrimSpace(secret)
	if secret == "" {
		return "", usageError("tenants add: a shared secret is required (--shared-secret-file)")
	}
	return secret, nil
}

// minSecret is the shortest shared secret tenants add accepts: an HS256
// key of 256 bits (RFC 7518 §3.2). Atlassian's are longer.
const minSecret = 32

// checkTenant validates what tenants add is about to store.
func checkTenant(secret, baseURL, product string) error {
	if len(secret) < minSecret {
		return usageError(fmt.Sprintf("tenants add: the shared secret has %d bytes, want at least %d (it is the tenant's HS256 key)", len(secret), minSecret))
	}
	switch product {
	case "", "jira", "confluence":
	default:
		return usageError(fmt.Sprintf("tenants add: --product-type %q: want jira or confluence", product))
	}
	if baseURL == "" {
		return nil
	}
	u, err := url.Parse(baseURL)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return usageError(fmt.Sprintf("tenants add: --tenant-base-url %q: want an absolute https URL without credentials or query", baseURL))
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		return usageError(fmt.Sprintf("tenants add: --tenant-base-url %q: want https (http only on loopback, for tests)", baseURL))
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func printTenants(w io.Writer, tenants []ingest.Tenant, asJSON bool) error {
	if asJSON {
		type row struct {
			ClientKey     string     `json:"clientKey"`
			BaseURL       string     `json:"baseUrl,omitempty"`
			ProductType   string     `json:"productType,omitempty"`
			InstalledAt   time.Time  `json:"installedAt"`
			UninstalledAt *time.Time `json:"uninstalledAt,omitempty"`
		}
		rows := make([]row, 0, len(tenants))
		for _, t := range tenants {
			rows = append(rows, row{t.ClientKey, t.BaseURL, t.ProductType, t.InstalledAt, t.UninstalledAt})
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"tenants": rows})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT KEY\tSTATE\tPRODUCT\tBASE URL\tINSTALLED")
	for _, t := range tenants {
		state := "installed"
		if !t.Active() {
			state = "uninstalled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ClientKey, state, t.ProductType, t.BaseURL, t.InstalledAt.Format(time.RFC3339))
	}
	return tw.Flush()
}
