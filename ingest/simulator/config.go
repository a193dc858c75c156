package simulator

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/transferd/transferd/ingest/platform/platformtest"
)

// Mix says which kind of app the simulated transfers come from.
type Mix string

// The source mixes.
const (
	MixConnect Mix = "connect" // Connect webhooks only
	MixForge   Mix = "forge"   // Forge remote events only
	MixMixed   Mix = "mixed"   // about half of each (the default)
)

// InstallMode says how the simulator's Connect tenants become known to the
// server.
type InstallMode string

// The install modes.
const (
	// InstallSigned posts /connect/installed with an RS256 signed-install
	// JWT whose key the simulator's key server publishes (the default).
	InstallSigned InstallMode = "signed"
	// InstallUnsigned posts /connect/installed without a JWT; the server
	// must run with --allow-unsigned-install.
	InstallUnsigned InstallMode = "unsigned"
	// InstallNone installs nothing: Config.ConnectTenants are registered
	// already (transferd tenants add).
	InstallNone InstallMode = "none"
)

// Credential is a Connect installation registered outside the simulator.
type Credential struct {
	ClientKey    string
	SharedSecret string
}

// ParseCredential reads "clientKey:sharedSecret" (the secret may contain
// colons).
func ParseCredential(s string) (Credential, error) {
	key, secret, ok := strings.Cut(s, ":")
	if !ok || key == "" || secret == "" {
		return Credential{}, fmt.Errorf("tenant %q: want clientKey:sharedSecret", redact(s))
	}
	return Credential{ClientKey: key, SharedSecret: secret}, nil
}

// redact keeps what precedes the first colon: never echo a secret.
func redact(s string) string {
	if key, _, ok := strings.Cut(s, ":"); ok {
		return key + ":…"
	}
	return s
}

// Defaults of Config and of the simulate command.
const (
	DefaultTarget = "http://127.0.0.1:8080"
	// DefaultConnectPath is serve's default Connect webhook path (the
	// ingest package's DefaultConnectPath, spelled out so that the
	// simulator does not depend on the server it tests; a test keeps the
	// two equal).
	DefaultConnectPath = "/connect/migration-events"
	DefaultTransfers   = 200
	DefaultConcurrency = 64
	DefaultTenants     = 4
	DefaultDuplicates  = 0.2
	DefaultReruns      = 0.15
	DefaultBad         = 0.05
	DefaultKeysListen  = "127.0.0.1:8081"
	// DefaultAppARI is the Forge app ARI the simulator's tokens name when
	// none is configured; `make run` pins the server to it.
	DefaultAppARI         = "ari:cloud:ecosystem::app/00000000-0000-4000-8000-000000000000"
	DefaultRequestTimeout = 5 * time.Second // the platform's acknowledgement limit
	DefaultTimeout        = 10 * time.Minute
)

// Config configures Run. Counts and durations left zero take the defaults
// above; the shares (Duplicates, Reruns, Bad) are taken as given, so the
// zero Config sends a clean workload (the simulate command passes the
// Default… shares).
type Config struct {
	// Target is the base URL of the transferd server; default
	// DefaultTarget.
	Target string
	// BaseURL is the app's base URL as the server knows it (serve
	// --base-url, which defaults to http://<listen address>): the audience
	// of signed installs, and its path is removed from request paths when
	// the qsh is computed. Default Target.
	BaseURL string
	// ConnectPath is the server's Connect webhook path; default
	// DefaultConnectPath.
	ConnectPath string

	// Transfers is how many transfers to deliver, re-runs included;
	// default DefaultTransfers.
	Transfers int
	// Concurrency is the number of sending workers (and keep-alive
	// connections); default DefaultConcurrency.
	Concurrency int
	// Source is the mix of Connect and Forge transfers; default MixMixed.
	Source Mix
	// Duplicates is the share of events delivered more than once (twice,
	// sometimes three times, some copies concurrently), 0 to 1.
	Duplicates float64
	// Reruns is the share of transfers that re-run an earlier one (a new
	// transferId whose events carry originalTransferId), 0 to 1.
	Reruns float64
	// Bad is the number of bad requests mixed in, as a share of the good
	// events (0 to 1): each must be refused with a 4xx.
	Bad float64
	// Tenants is the number of tenants (Connect installations and Forge
	// installations together, at least one of each source in use); default
	// DefaultTenants. With InstallNone the Connect tenants are
	// ConnectTenants instead.
	Tenants int
	// Seed makes the workload reproducible: the same seed, Config and
	// start time give the same transfers and payloads. Zero picks one from
	// the clock; Result.Seed reports it.
	Seed int64

	// Install says how Connect tenants are installed; default
	// InstallSigned.
	Install InstallMode
	// ConnectTenants are the Connect tenants to use with InstallNone.
	ConnectTenants []Credential

	// KeyServer is an already running key server to sign with; Run then
	// leaves it running. Nil starts one on KeysListen for the run.
	KeyServer *KeyServer
	// KeysListen is where Run starts its key server; default
	// DefaultKeysListen ("127.0.0.1:0" picks a free port).
	KeysListen string
	// KeysFile keeps the key server's keys across runs (see
	// StartKeyServerFile); empty generates fresh keys each run.
	KeysFile string
	// TenantsFile keeps the generated tenants (Connect client keys and
	// shared secrets, Forge installation ids, their sites) across runs, so
	// that every run against a server installs and plays the same tenants
	// rather than new ones; a run that needs more tenants than it holds
	// adds them. Empty makes new tenants each run.
	TenantsFile string
	// AppARI is the Forge app's ARI, the audience of the Forge Invocation
	// Tokens; default DefaultAppARI.
	AppARI string

	// Platform, when set, is the simulator's platform REST side (a
	// platformtest.Server whose AppKey is AppKey): Run registers its
	// tenants and transfers there and leaves it running. Nil starts one
	// on PlatformListen for the run, when that is set. With a platform,
	// Connect tenants are installed with their site there as baseUrl,
	// Forge tokens name it as app.apiBaseUrl and each Forge event carries
	// an x-forge-oauth-system token; without one nothing changes.
	Platform *platformtest.Server
	// PlatformListen is where Run starts its platform ("127.0.0.1:8082");
	// empty starts none.
	PlatformListen string
	// PlatformTooManyEvery makes a platform Run starts answer every n-th
	// request 429; 0 is DefaultPlatformTooManyEvery, below 0 never.
	PlatformTooManyEvery int
	// UnsentUploads and UnsentTransfers are webhooks kept back, with a
	// platform: uploads the platform lists whose app-data-uploaded is not
	// sent, and transfers in progress there of which nothing is sent
	// (what reconciliation must find).
	UnsentUploads, UnsentTransfers int
	// WaitSettled, with a platform, waits after sending up to this long
	// for the app to settle the errored and cancelled Connect transfers.
	WaitSettled time.Duration
	// ExpectSettled makes Result.Err fail when some of them stay
	// unsettled.
	ExpectSettled bool
	// SettleAll makes every Connect transfer with uploads that the
	// platform does not settle itself owed a settle by the app, not only
	// the errored and cancelled ones: what serve --work --settle-done does
	// once importers have done the uploads (with any status: SUCCESS, or
	// INCOMPLETE naming failed uploads). A transfer without uploads is
	// not over as far as the app knows, so it is not counted.
	SettleAll bool

	// RequestTimeout bounds one HTTP request; default
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Timeout bounds the whole run, installs included: an event not
	// acknowledged by then is reported as a failure. Default
	// DefaultTimeout.
	Timeout time.Duration

	// Progress, when set, receives progress lines while events are being
	// sent and one closing line (the command passes stderr), and notes on
	// what the simulator is waiting for. A line is written only when the
	// counters moved: on a terminal (ProgressTerminal) at most every
	// ProgressInterval, elsewhere at each 10 % step of the answered
	// requests or after ProgressQuiet.
	Progress io.Writer
	// ProgressTerminal says Progress is a terminal.
	ProgressTerminal bool
	// ProgressInterval is how often the counters are looked at; default
	// one second.
	ProgressInterval time.Duration
	// ProgressQuiet is the longest gap between two lines on a
	// non-terminal while the counters move; default DefaultProgressQuiet.
	ProgressQuiet time.Duration

	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Target == "" {
		c.Target = DefaultTarget
	}
	c.Target = strings.TrimSuffix(c.Target, "/")
	if c.BaseURL == "" {
		c.BaseURL = c.Target
	}
	if c.ConnectPath == "" {
		c.ConnectPath = DefaultConnectPath
	}
	if c.Transfers <= 0 {
		c.Transfers = DefaultTransfers
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Source == "" {
		c.Source = MixMixed
	}
	if c.Tenants <= 0 {
		c.Tenants = DefaultTenants
	}
	if c.Install == "" {
		c.Install = InstallSigned
	}
	if c.KeysListen == "" {
		c.KeysListen = DefaultKeysListen
	}
	if c.AppARI == "" {
		c.AppARI = DefaultAppARI
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// ErrConfig is wrapped by every error about an invalid Config.
var ErrConfig = errors.New("simulator: invalid config")

func (c Config) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
	}
	for _, u := range []struct{ name, value string }{{"target", c.Target}, {"base URL", c.BaseURL}} {
		p, err := url.Parse(u.value)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return bad("%s %q is not an http(s) URL", u.name, u.value)
		}
	}
	if !strings.HasPrefix(c.ConnectPath, "/") {
		return bad("Connect path %q must start with /", c.ConnectPath)
	}
	switch c.Source {
	case MixConnect, MixForge, MixMixed:
	default:
		return bad("source %q: want connect, forge or mixed", c.Source)
	}
	switch c.Install {
	case InstallSigned, InstallUnsigned:
		if len(c.ConnectTenants) > 0 {
			return bad("Connect tenants are given only with install mode none")
		}
	case InstallNone:
		if c.Source != MixForge && len(c.ConnectTenants) == 0 {
			return bad("install mode none needs the Connect tenants already registered (clientKey:secret)")
		}
	default:
		return bad("install mode %q: want signed, unsigned or none", c.Install)
	}
	for _, cr := range c.ConnectTenants {
		if cr.ClientKey == "" || cr.SharedSecret == "" {
			return bad("a Connect tenant needs a clientKey and a shared secret")
		}
	}
	for _, s := range []struct {
		name string
		v    float64
	}{{"duplicates", c.Duplicates}, {"reruns", c.Reruns}, {"bad", c.Bad}} {
		if s.v < 0 || s.v > 1 || s.v != s.v {
			return bad("%s share %v is not between 0 and 1", s.name, s.v)
		}
	}
	if c.Platform == nil && c.PlatformListen == "" && (c.UnsentUploads > 0 || c.UnsentTransfers > 0 || c.WaitSettled > 0 || c.ExpectSettled || c.SettleAll) {
		return bad("unsent webhooks and waiting for settles need the simulator's platform (--platform-listen)")
	}
	if c.UnsentUploads < 0 || c.UnsentTransfers < 0 {
		return bad("unsent uploads and transfers cannot be negative")
	}
	if !strings.HasPrefix(c.AppARI, "ari:cloud:ecosystem::app/") {
		return bad("Forge app ARI %q: want ari:cloud:ecosystem::app/<uuid>", c.AppARI)
	}
	return nil
}
