package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"

	"github.com/transferd/transferd/ingest"
)

const descriptorAbout = `Print the atlassian-connect.json entries that point the migration platform
and the Connect lifecycle at this server, to paste into the app's descriptor:

  baseUrl, authentication {"type":"jwt"},
  lifecycle {"installed":"/connect/installed","uninstalled":"/connect/uninstalled"},
  apiMigrations {"signed-install":true},
  cloudAppMigration {"migrationWebhookPath": --connect-path},
  regionBaseUrls (with --region),
  key (with --app-key).

Paths are relative to baseUrl (and to each regionBaseUrl), as the platform
joins them; serve routes them at its root, so a baseUrl with a path needs a
proxy that strips it. signed-install makes Atlassian sign install callbacks
(RS256), which serve requires unless started with --allow-unsigned-install.
The webhook in the descriptor is the platform's preferred registration; the
Notification API ("transferd webhook register") is the fallback.`

// Descriptor paths of serve's lifecycle routes (package ingest).
const (
	lifecycleInstalled   = "/connect/installed"
	lifecycleUninstalled = "/connect/uninstalled"
)

// descriptorFragment is the part of atlassian-connect.json transferd
// answers for, in the order it is printed.
type descriptorFragment struct {
	Key               string             `json:"key,omitempty"`
	BaseURL           string             `json:"baseUrl"`
	Authentication    descriptorAuth     `json:"authentication"`
	Lifecycle         descriptorLife     `json:"lifecycle"`
	APIMigrations     descriptorMigrate  `json:"apiMigrations"`
	CloudAppMigration descriptorCloudApp `json:"cloudAppMigration"`
	RegionBaseURLs    map[string]string  `json:"regionBaseUrls,omitempty"` // keys sorted by encoding/json
}

type descriptorAuth struct {
	Type string `json:"type"`
}

type descriptorLife struct {
	Installed   string `json:"installed"`
	Uninstalled string `json:"uninstalled"`
}

type descriptorMigrate struct {
	SignedInstall bool `json:"signed-install"`
}

type descriptorCloudApp struct {
	MigrationWebhookPath string `json:"migrationWebhookPath"`
}

// regionFlag is --region KEY=URL, repeatable.
type regionFlag map[string]string

func (r regionFlag) String() string {
	keys := make([]string, 0, len(r))
	for k := range r {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + r[k]
	}
	return strings.Join(keys, ",")
}

func (r regionFlag) Set(v string) error {
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		key, u, ok := strings.Cut(item, "=")
		if !ok || !validRegion(key) {
			return fmt.Errorf("want REGION=URL with REGION in capitals, e.g. EU=https://eu.app.example.com, not %q", item)
		}
		if _, dup := r[key]; dup {
			return fmt.Errorf("region %s given twice", key)
		}
		clean, err := descriptorURL(u)
		if err != nil {
			return fmt.Errorf("region %s: %w", key, err)
		}
		r[key] = clean
	}
	return nil
}

func validRegion(k string) bool {
	if k == "" || len(k) > 16 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !('A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// descriptorURL checks a base URL and removes a trailing slash: the
// platform appends paths that start with one.
func descriptorURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q is not an absolute http(s) URL without query", s)
	}
	return strings.TrimRight(s, "/"), nil
}

func runDescriptor(_ context.Context, args []string, getenv env, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("descriptor", descriptorAbout, stderr)
	var baseURL, connectPath, appKey string
	var signedInstall bool
	regions := regionFlag{}
	fs.StringVar(&baseURL, "base-url", "", "the app's public base `URL`, as given to serve (required)")
	fs.StringVar(&connectPath, "connect-path", ingest.DefaultConnectPath, "`path` of serve's Connect migration webhook, relative to the base URL")
	fs.Var(regions, "region", "a regionBaseUrls entry `REGION=URL`, e.g. EU=https://eu.app.example.com (repeatable)")
	fs.StringVar(&appKey, "app-key", "", "the Connect app `key`, printed as \"key\" when given")
	fs.BoolVar(&signedInstall, "signed-install", true, `opt in to signed install callbacks ("apiMigrations":{"signed-install":true})`)
	if err := parse(fs, args, getenv); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Sprintf("descriptor: unexpected argument %q", fs.Arg(0)))
	}
	if baseURL == "" {
		return usageError("descriptor: --base-url is required (the app's public base URL)")
	}
	base, err := descriptorURL(baseURL)
	if err != nil {
		return usageError("--base-url: " + err.Error())
	}
	if !strings.HasPrefix(connectPath, "/") || strings.ContainsAny(connectPath, "?#") {
		return usageError(fmt.Sprintf("--connect-path %q: want a path starting with /", connectPath))
	}
	for _, u := range append([]string{base}, regionURLs(regions)...) {
		if strings.HasPrefix(u, "http://") {
			fmt.Fprintf(stderr, "warning: %s is not HTTPS; Atlassian requires HTTPS base URLs outside development\n", u)
		}
	}
	if !signedInstall {
		fmt.Fprintln(stderr, "warning: without signed-install, serve refuses install callbacks unless started with --allow-unsigned-install")
	}
	d := descriptorFragment{
		Key:               appKey,
		BaseURL:           base,
		Authentication:    descriptorAuth{Type: "jwt"},
		Lifecycle:         descriptorLife{Installed: lifecycleInstalled, Uninstalled: lifecycleUninstalled},
		APIMigrations:     descriptorMigrate{SignedInstall: signedInstall},
		CloudAppMigration: descriptorCloudApp{MigrationWebhookPath: connectPath},
	}
	if len(regions) > 0 {
		d.RegionBaseURLs = regions
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(d)
}

func regionURLs(r regionFlag) []string {
	out := make([]string, 0, len(r))
	for _, u := range r {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}
