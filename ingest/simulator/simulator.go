package simulator

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/ingest/atlassian"
)

// ErrNotTrusted is wrapped by Run's error when the server refuses the
// simulator's installs or tokens: it was not started with the flags of
// KeyServer.ServeFlags (or --allow-unsigned-install, or the tenants are not
// registered). The message says which flags are missing.
var ErrNotTrusted = errors.New("simulator: the server does not trust the simulator")

// Run plays the platform against cfg.Target: it starts a key server unless
// cfg.KeyServer is given (and keeps it serving until Run returns), installs
// the Connect tenants, checks that the server trusts the simulator's
// tokens, then delivers the workload and reports.
//
// The error is about the run itself: a bad Config, an unreachable server,
// a server that does not trust the simulator (the message names the serve
// flags that fix it), or ctx ending (the Result then covers what was sent).
// How the server behaved is in the Result: see Result.Err.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	seed := cfg.Seed
	for seed == 0 {
		seed = time.Now().UnixNano() & (1<<53 - 1) // exact in JSON
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	keys := cfg.KeyServer
	if keys == nil {
		var err error
		if keys, err = StartKeyServerFile(cfg.KeysListen, cfg.KeysFile); err != nil {
			return Result{}, err
		}
		defer keys.Close()
		note(cfg.Progress, "simulate: key server on %s (serve trusts it with %s)\n", keys.URL(), strings.Join(keys.ServeFlags(cfg.AppARI), " "))
	}

	r := rand.New(rand.NewPCG(uint64(seed), 0x7472616e73666572)) // "transfer"
	tenants := newTenants(cfg, r)
	if cfg.TenantsFile != "" {
		reused, err := keepTenants(cfg.TenantsFile, tenants)
		if err != nil {
			return Result{}, err
		}
		if reused > 0 {
			note(cfg.Progress, "simulate: playing %d of its %d tenants kept in %s\n", reused, len(tenants), cfg.TenantsFile)
		}
	}
	w, err := buildWorkload(cfg, r, tenants, cfg.Now())
	if err != nil {
		return Result{}, err
	}
	plat, stopPlatform, err := startPlatform(cfg, tenants)
	if err != nil {
		return Result{}, err
	}
	defer stopPlatform()
	var platRes *PlatformResult
	if plat != nil {
		platRes = platformWorkload(cfg, seed, plat, w)
		note(cfg.Progress, "simulate: platform on %s (serve --drive --app-key %s settles against it)\n", plat.URL, AppKey)
	}
	s, err := newSender(cfg, keys)
	if err != nil {
		return Result{}, err
	}
	defer s.client.CloseIdleConnections()

	res := Result{Seed: seed, Target: cfg.Target, KeyServer: keys.URL(), Transfers: len(w.transfers), Events: len(w.events), Platform: platRes}
	res.Bad.Planned = w.bad
	for _, t := range w.transfers {
		if t.original != nil {
			res.Reruns++
		}
	}
	for _, t := range tenants {
		if t.source == engine.SourceConnect {
			res.ConnectTenants++
		} else {
			res.ForgeInstallations++
		}
	}
	if err := s.prepare(ctx, tenants); err != nil {
		return res, err
	}

	total := len(w.jobs) + w.deferred
	stop, exited := make(chan struct{}), make(chan struct{})
	start := time.Now()
	var pw *progressWriter
	if cfg.Progress != nil {
		pw = newProgressWriter(cfg.Progress, cfg.ProgressTerminal, cfg.ProgressQuiet, start)
		go s.progress(pw, cfg.ProgressInterval, total, stop, exited)
	} else {
		close(exited)
	}
	lats := s.send(ctx, w)
	res.Duration = time.Since(start)
	close(stop)
	<-exited
	if pw != nil {
		pw.finish(time.Now(), s.counts(total))
	}

	res.Sent = s.started.Load() - s.badSent.Load()
	res.Acknowledged, res.Duplicates = s.acked.Load(), s.duplicates.Load()
	res.Retries, res.Failed, res.SeqMismatches = s.retries.Load(), s.failed.Load(), s.seqMis.Load()
	res.Requests = s.requests.Load()
	res.Bad.Sent, res.Bad.Refused, res.Bad.RefusedOther, res.Bad.Accepted = s.badSent.Load(), s.badRefused.Load(), s.badOther.Load(), s.badAccepted.Load()
	res.Bad.ByKind = s.byKind
	res.Statuses = map[int]int64{}
	for code := range s.statuses {
		if n := s.statuses[code].Load(); n > 0 {
			res.Statuses[code] = n
		}
	}
	res.DurationSeconds = res.Duration.Seconds()
	if secs := res.Duration.Seconds(); secs > 0 {
		res.EventsPerSecond = float64(res.Acknowledged) / secs
		res.RequestsPerSecond = float64(res.Requests) / secs
	}
	res.Latency = latency(lats)
	res.Failures = s.failures
	res.Refused = s.refused
	res.Acked = acked(w)
	res.Expect = expectations(w)
	res.Unacknowledged = len(w.events) - len(res.Acked)
	for _, e := range w.events {
		if e.acks.Load() == 0 && len(res.Failures) < keepFailures && !failed(res.Failures, e.id) {
			res.Failures = append(res.Failures, Failure{ID: e.id, TransferID: e.transfer.id, Kind: e.kind, Message: "not acknowledged before the deadline"})
		}
	}
	if platRes != nil {
		if cfg.WaitSettled > 0 && ctx.Err() == nil {
			platRes.waitSettled(ctx, plat, cfg.WaitSettled, func(f string, a ...any) { note(cfg.Progress, f, a...) })
		}
		platRes.Settlement(plat)
	}
	if err := ctx.Err(); err != nil && res.Unacknowledged > 0 {
		return res, fmt.Errorf("simulator: stopped before every event was acknowledged: %w", context.Cause(ctx))
	}
	return res, nil
}

func failed(list []Failure, id string) bool {
	for _, f := range list {
		if f.ID == id {
			return true
		}
	}
	return false
}

func newSender(cfg Config, keys *KeyServer) (*sender, error) {
	connectURL := cfg.Target + cfg.ConnectPath
	cu, err := url.Parse(connectURL)
	if err != nil {
		return nil, fmt.Errorf("%w: Connect webhook URL %q: %v", ErrConfig, connectURL, err)
	}
	bu, err := url.Parse(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("%w: base URL %q: %v", ErrConfig, cfg.BaseURL, err)
	}
	return &sender{
		cfg:        cfg,
		client:     newClient(cfg),
		connectURL: connectURL,
		forgeURL:   cfg.Target + "/forge/migration-events",
		signer: &signer{
			keys: keys, appARI: cfg.AppARI, connectPath: cu.EscapedPath(),
			basePath: strings.TrimSuffix(bu.EscapedPath(), "/"), now: cfg.Now,
		},
	}, nil
}

// prepare installs the Connect tenants and checks that the server trusts
// the tokens of each source before the workload starts, so that a
// misconfigured server costs one clear error rather than thousands of
// refusals.
func (s *sender) prepare(ctx context.Context, tenants []*tenant) error {
	var forge *tenant
	for _, t := range tenants {
		switch {
		case t.source == engine.SourceForge:
			forge = t
		case s.cfg.Install == InstallNone:
			if err := s.probe(ctx, t); err != nil {
				return err
			}
		default:
			if err := s.install(ctx, t); err != nil {
				return err
			}
		}
	}
	if forge != nil {
		return s.probe(ctx, forge)
	}
	return nil
}

// install posts t's installed callback, signed or not per cfg.Install.
func (s *sender) install(ctx context.Context, t *tenant) error {
	body, _ := json.Marshal(map[string]string{
		"key": simulatorAppKey, "clientKey": t.issuer, "sharedSecret": string(t.secret),
		"baseUrl": cmp.Or(t.siteURL, t.cloudURL), "displayUrl": t.cloudURL, "productType": t.product,
		"description": "transferd simulator tenant", "serviceEntitlementNumber": "SEN-" + t.issuer[:8],
		"eventType": "installed", "cloudId": t.cloudID,
	})
	installURL := s.cfg.Target + "/connect/installed"
	var auth string
	if s.cfg.Install == InstallSigned {
		u, _ := url.Parse(installURL)
		qsh := atlassian.QSH(http.MethodPost, u.EscapedPath(), "", s.signer.basePath)
		tok, err := s.signer.keys.SignInstall(t.issuer, s.cfg.BaseURL, qsh, installTokenTTL, s.cfg.Now())
		if err != nil {
			return err
		}
		auth = "JWT " + tok
	}
	rep, err := s.setup(ctx, installURL, auth, body)
	if err == nil && s.cfg.Install == InstallUnsigned && rep.status == http.StatusUnauthorized && rep.code == httperr.CodeMissingToken {
		// Installed already (by an earlier run): a re-install is signed
		// with the tenant's shared secret, as Connect signs it.
		u, _ := url.Parse(installURL)
		tok, serr := atlassian.SignConnect(http.MethodPost, u.EscapedPath(), s.signer.basePath, t.issuer, t.secret, installTokenTTL, s.cfg.Now())
		if serr != nil {
			return serr
		}
		signed, serr := s.setup(ctx, installURL, "JWT "+tok, body)
		switch {
		case serr == nil && signed.status == http.StatusUnauthorized && signed.code == httperr.CodeUnknownTenant:
			// Not installed: the unsigned install was refused as unsigned.
		case serr == nil && signed.status != http.StatusOK:
			return fmt.Errorf("%w: re-install of %s signed with its shared secret refused: %d %s: %s (the server has it with another secret: use --install signed, or remove it with transferd tenants remove)",
				ErrNotTrusted, t.issuer, signed.status, signed.code, signed.msg)
		default:
			rep, err = signed, serr
		}
	}
	switch {
	case err != nil:
		return fmt.Errorf("simulator: install Connect tenant %s: %w (is transferd serve running at %s?)", t.issuer, err, s.cfg.Target)
	case rep.status == http.StatusOK:
		return nil
	case s.cfg.Install == InstallUnsigned:
		return fmt.Errorf("%w: unsigned install of %s refused: %d %s: %s (start serve with --allow-unsigned-install, or use --install signed)",
			ErrNotTrusted, t.issuer, rep.status, rep.code, rep.msg)
	}
	return fmt.Errorf("%w: signed install of %s refused: %d %s: %s (start serve with --install-keys-url %s and --base-url %s, or pass the server's base URL with --base-url)",
		ErrNotTrusted, t.issuer, rep.status, rep.code, rep.msg, s.signer.keys.InstallKeysURL(), s.cfg.BaseURL)
}

// probe checks that the server accepts t's tokens: it posts "{}" with a
// valid token, which a trusting server refuses as an invalid payload (400)
// and stores nothing. A Forge key set the server has not fetched yet is
// waited for: servers re-fetch an unknown key at most once a minute.
func (s *sender) probe(ctx context.Context, t *tenant) error {
	url := s.url(t.source)
	waiting := false
	// One refresh interval of the server's key set, and some margin.
	giveUp := time.Now().Add(75 * time.Second)
	for {
		auth, err := s.signer.authorization(t)
		if err != nil {
			return err
		}
		rep, err := s.setup(ctx, url, auth, []byte("{}"))
		switch {
		case err != nil:
			return fmt.Errorf("simulator: probe %s: %w (is transferd serve running at %s?)", url, err, s.cfg.Target)
		case rep.status == http.StatusBadRequest:
			return nil
		case t.source == engine.SourceConnect:
			return fmt.Errorf("%w: Connect tenant %s refused: %d %s: %s (register it with transferd tenants add, or use --install signed)",
				ErrNotTrusted, t.issuer, rep.status, rep.code, rep.msg)
		case rep.code != httperr.CodeInvalidSignature:
			return s.forgeRefused(rep)
		}
		if !waiting {
			note(s.cfg.Progress, "simulate: the server does not know the simulator's Forge key yet; waiting for it to fetch %s (it does so at most once a minute)\n", s.signer.keys.JWKSURL())
			waiting = true
		}
		if time.Now().After(giveUp) || !sleep(ctx, 2*time.Second) {
			return s.forgeRefused(rep)
		}
	}
}

func (s *sender) forgeRefused(rep reply) error {
	return fmt.Errorf("%w: Forge events refused: %d %s: %s (start serve with %s)",
		ErrNotTrusted, rep.status, rep.code, rep.msg, strings.Join(s.signer.keys.ServeFlags(s.cfg.AppARI), " "))
}

func note(w io.Writer, format string, a ...any) {
	if w != nil {
		fmt.Fprintf(w, format, a...)
	}
}
