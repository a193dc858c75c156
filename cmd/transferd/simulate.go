package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/transferd/transferd/ingest"
	"github.com/transferd/transferd/ingest/simulator"
)

const simulateAbout = `Play Atlassian's app migration platform against a transferd server: install
Connect tenants, then deliver a seeded workload of Connect webhooks and Forge
remote events (shuffled, some sent twice or more, re-runs interleaved with
their originals, bad requests mixed in), retrying every event until it is
acknowledged, as the platform does. It is also transferd's load generator.

The simulator signs with keys it generates at start and serves on
--keys-listen; the server must trust that key server. Start serve with
(make run does exactly this):

  transferd serve \
    --forge-app-ari ` + simulator.DefaultAppARI + ` \
    --forge-jwks-url http://` + simulator.DefaultKeysListen + simulator.JWKSPath + ` \
    --install-keys-url http://` + simulator.DefaultKeysListen + simulator.InstallKeysPath + `

Its tenants are kept in --tenants-file (in the user's cache directory):
every run installs the same Connect tenants again (a signed re-install) and
plays the same Forge installations; only the transfers are new.

Add --allow-unsigned-install to serve for --install unsigned. For --install
none, register the Connect tenants first (transferd tenants add) and name
them with --tenant clientKey:secret. These serve flags trust a local
simulator: never use them in production.

With --platform-listen it also plays the platform's REST side there
(statefully: the first settle wins and later ones get 403, a lower percent
is ignored, app data is gone once settled, 429 now and then, Forge
transfers fail without a message status for 15 minutes): its Connect
tenants are installed with their site there as baseUrl and Forge events
name it as app.apiBaseUrl, with an x-forge-oauth-system token, so that

  transferd serve … --drive --app-key ` + simulator.AppKey + ` \
    --settle-errored --settle-cancelled --reconcile-interval 30s

settles against it (make demo does this). --wait-settled and
--expect-settled report and check who settled what (--settle-all: every
Connect transfer, for serve --work --settle-done with importers);
--platform-unsent-uploads and --platform-unsent-transfers keep webhooks
back for reconciliation to find. Without the flag nothing changes.

Progress goes to stderr (on a terminal every second, elsewhere at each
10 % step, each line news), the summary to stdout (--json for JSON); --expect
writes what every transfer must end up as, for tests. The exit status is 1
when a good event was not acknowledged or a bad request was accepted.`

func runSimulate(ctx context.Context, args []string, getenv env, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("simulate", simulateAbout, stderr)
	var (
		cfg          simulator.Config
		source       string
		install      string
		tenants      listFlag
		expectFile   string
		asJSON       bool
		linger       time.Duration
		shortConcSet bool
	)
	fs.StringVar(&cfg.Target, "target", simulator.DefaultTarget, "base `URL` of the transferd server")
	fs.IntVar(&cfg.Transfers, "transfers", simulator.DefaultTransfers, "`number` of transfers to deliver, re-runs included")
	fs.IntVar(&cfg.Concurrency, "concurrency", simulator.DefaultConcurrency, "`number` of concurrent senders (and keep-alive connections)")
	fs.Func("c", "`number` of concurrent senders: short for --concurrency, whose variable it reads", func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return err
		}
		cfg.Concurrency, shortConcSet = n, true
		return nil
	})
	fs.StringVar(&source, "source", string(simulator.MixMixed), "`kind` of apps: connect, forge or mixed")
	fs.Float64Var(&cfg.Duplicates, "duplicates", simulator.DefaultDuplicates, "`share` of events delivered twice or more (0 to 1)")
	fs.Float64Var(&cfg.Reruns, "reruns", simulator.DefaultReruns, "`share` of transfers that re-run an earlier one (0 to 1)")
	fs.Float64Var(&cfg.Bad, "bad", simulator.DefaultBad, "bad requests to mix in, as a `share` of the good events (0 to 1)")
	fs.IntVar(&cfg.Tenants, "tenants", simulator.DefaultTenants, "`number` of tenants: Connect installations and Forge installations together")
	fs.Int64Var(&cfg.Seed, "seed", 0, "workload `seed`, to reproduce a run; 0 picks one (the summary shows it)")
	fs.StringVar(&install, "install", string(simulator.InstallSigned), "`mode` of installing the Connect tenants: signed (an RS256 signed install),\nunsigned (serve needs --allow-unsigned-install) or none (registered already: --tenant)")
	fs.Var(&tenants, "tenant", "`clientKey:secret` of a Connect tenant already registered, for --install none\n(repeatable, or comma-separated)")
	fs.StringVar(&cfg.KeysListen, "keys-listen", simulator.DefaultKeysListen, "`host:port` of the simulator's key server (port 0 picks one and prints it)")
	fs.StringVar(&cfg.KeysFile, "keys-file", defaultStateFile("simulator-keys.pem"), "`file` keeping the simulator's RSA keys across runs, so a server that cached them\nneeds no new fetch; empty generates fresh keys each run")
	fs.StringVar(&cfg.TenantsFile, "tenants-file", defaultStateFile("simulator-tenants.json"), "`file` keeping the simulator's tenants (client keys, shared secrets, Forge installations)\nacross runs, so that every run plays the same ones; empty makes new tenants each run")
	fs.StringVar(&cfg.AppARI, "forge-app-ari", simulator.DefaultAppARI, "the Forge app's `ARI`: the audience of the Forge Invocation Tokens (serve's --forge-app-ari)")
	fs.StringVar(&cfg.BaseURL, "base-url", "", "the app's base `URL` as serve knows it (serve's --base-url): the audience of signed\ninstalls and the base of the qsh (default --target)")
	fs.StringVar(&cfg.ConnectPath, "connect-path", ingest.DefaultConnectPath, "`path` of the server's Connect migration webhook (serve's --connect-path)")
	fs.StringVar(&expectFile, "expect", "", "write the acknowledged events, the refused ones and what every transfer must end\nup as to this JSON `file`")
	fs.StringVar(&cfg.PlatformListen, "platform-listen", "", "`host:port` to serve the platform's REST side on (127.0.0.1:8082): the Connect tenants are\ninstalled with their site there as baseUrl and Forge events name it as app.apiBaseUrl, so\nthat serve --drive --app-key "+simulator.AppKey+" settles against it; off by default")
	fs.IntVar(&cfg.UnsentUploads, "platform-unsent-uploads", 0, "with --platform-listen, `number` of uploads the platform lists whose webhook is not sent\n(for serve's reconciliation to find)")
	fs.IntVar(&cfg.UnsentTransfers, "platform-unsent-transfers", 0, "with --platform-listen, `number` of transfers in progress on the platform of which no\nwebhook is sent")
	fs.DurationVar(&cfg.WaitSettled, "wait-settled", 0, "with --platform-listen, wait up to this long after sending for the app to settle the\nerrored and cancelled Connect transfers, then report who settled what")
	fs.BoolVar(&cfg.SettleAll, "settle-all", false, "with --platform-listen, --wait-settled and --expect-settled count every Connect transfer\nwith uploads that the platform does not settle itself, not only the errored and cancelled\nones (for serve --work --settle-done with importers: those settle once their uploads are imported)")
	fs.BoolVar(&cfg.ExpectSettled, "expect-settled", false, "with --platform-listen, fail when an errored or cancelled Connect transfer stays unsettled\n(for serve --drive --settle-errored --settle-cancelled)")
	fs.DurationVar(&linger, "platform-linger", 0, "with --platform-listen, keep serving the platform this long after the summary (or until\ninterrupted), so that serve's driver and reconciliation can still call it")
	fs.BoolVar(&asJSON, "json", false, "print the summary as JSON")
	fs.DurationVar(&cfg.Timeout, "timeout", simulator.DefaultTimeout, "give up on events not acknowledged after this long (the whole run)")
	fs.DurationVar(&cfg.RequestTimeout, "request-timeout", simulator.DefaultRequestTimeout, "limit of one request (the platform waits 5 s)")
	// -c is an alias: TRANSFERD_SIMULATE_CONCURRENCY is its variable, and
	// an explicit -c wins over it.
	aliasEnv := func(name string) string {
		if name == envName(fs, "concurrency") && shortConcSet {
			return ""
		}
		return getenv(name)
	}
	if err := parse(fs, args, aliasEnv); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Sprintf("simulate: unexpected argument %q", fs.Arg(0)))
	}
	cfg.Source, cfg.Install = simulator.Mix(source), simulator.InstallMode(install)
	for _, s := range tenants {
		c, err := simulator.ParseCredential(s)
		if err != nil {
			return usageError("--tenant: " + err.Error())
		}
		cfg.ConnectTenants = append(cfg.ConnectTenants, c)
	}
	cfg.Progress, cfg.ProgressTerminal = stderr, writerIsTerminal(stderr)
	if linger > 0 && cfg.PlatformListen != "" {
		p, err := simulator.StartPlatform(cfg.PlatformListen, 0)
		if err != nil {
			return err
		}
		defer p.Close()
		cfg.Platform = p
		defer func() {
			fmt.Fprintf(stderr, "simulate: keeping the platform on %s for %s (interrupt to stop)\n", p.URL, linger)
			t := time.NewTimer(linger)
			defer t.Stop()
			select {
			case <-ctx.Done():
			case <-t.C:
			}
		}()
	}

	res, err := simulator.Run(ctx, cfg)
	switch {
	case errors.Is(err, simulator.ErrConfig):
		return usageError(err.Error())
	case err != nil && res.Sent+res.Bad.Sent == 0:
		return err // nothing was sent: a set-up problem
	}
	if expectFile != "" {
		if werr := writeExpect(expectFile, &res); werr != nil {
			return werr
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if werr := enc.Encode(res); werr != nil {
			return werr
		}
	} else if werr := res.WriteText(stdout); werr != nil {
		return werr
	}
	if err != nil {
		return err
	}
	return res.Err()
}

func writeExpect(path string, res *simulator.Result) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--expect: %w", err)
	}
	if err := res.WriteExpect(f); err != nil {
		f.Close()
		return fmt.Errorf("--expect: %w", err)
	}
	return f.Close()
}

// defaultStateFile is where simulate keeps its development state (keys,
// tenants): the user's cache directory, never the server's data directory.
func defaultStateFile(name string) string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "transferd", name)
}

// writerIsTerminal reports whether w is a terminal (a character device).
func writerIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
