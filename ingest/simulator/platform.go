package simulator

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/ingest/platform"
	"github.com/transferd/transferd/ingest/platform/platformtest"
)

// AppKey is the Connect app key of the simulator's tenants (the key of
// their installed callbacks): serve --drive signs its calls to the
// simulator's platform with it (--app-key).
const AppKey = simulatorAppKey

// DefaultPlatformTooManyEvery makes the simulator's platform answer every
// n-th request 429 (Retry-After: 1), as the platform's rate limits do now
// and then.
const DefaultPlatformTooManyEvery = 23

// PlatformResult is what the simulator's platform saw (Config.Platform or
// PlatformListen): the transfers it holds, the webhooks deliberately not
// sent, and who settled what.
type PlatformResult struct {
	URL       string `json:"url"`
	Transfers int    `json:"transfers"`
	// UnsentUploads are uploads the platform lists (data/{id}/all) whose
	// app-data-uploaded webhook was not sent; UnsentTransfers transfers in
	// progress there (transfer/recent) of which no webhook was sent.
	UnsentUploads   []UnsentUpload `json:"unsentUploads,omitempty"`
	UnsentTransfers []string       `json:"unsentTransfers,omitempty"`
	// Owed is the number of errored or cancelled Connect transfers the
	// platform does not settle itself: the app must (serve --drive
	// --settle-errored --settle-cancelled). With Config.SettleAll, every
	// Connect transfer sent that the platform does not settle.
	Owed int `json:"owed"`
	// SettledByApp counts the transfers the app settled, by status;
	// SettledByPlatform those the platform settled (the transfer-settled
	// webhooks, timeouts).
	SettledByApp      map[string]int `json:"settledByApp"`
	SettledByPlatform int            `json:"settledByPlatform"`
	// SettledTwice counts transfers the app sent a settle for again after
	// the platform had answered one: it must be 0. Resent counts those
	// sent again only after a call cut short (the app could not know
	// whether it landed; the platform refuses the repeat as settled).
	SettledTwice int `json:"settledTwice"`
	Resent       int `json:"resent"`
	// Unsettled are the owed transfers still in progress.
	Unsettled []string `json:"unsettled,omitempty"`
	// Expect: Result.Err fails while Unsettled is not empty
	// (Config.ExpectSettled).
	Expect bool `json:"expectSettled,omitempty"`

	// Owing lists the owed transfers and why (errored, cancelled, done).
	Owing []OwedSettle `json:"-"`
	all   bool         // Config.SettleAll: Owing has every Connect transfer
}

// UnsentUpload is an upload whose webhook the simulator kept back.
type UnsentUpload struct {
	TransferID string `json:"transferId"`
	S3Key      string `json:"s3Key"`
}

// OwedSettle is a transfer the app must settle, and why: "errored"
// (listener-errored; serve's --errored-status), "cancelled" (its
// cancellation requested; --cancelled-status) or, with Config.SettleAll,
// "done" (its uploads imported; --settle-done).
type OwedSettle struct {
	TransferID, Reason string
}

// StartPlatform starts the simulator's platform on addr as Run does for
// Config.PlatformListen (tooManyEvery as Config.PlatformTooManyEvery), for
// a caller that keeps it serving after Run returns.
func StartPlatform(addr string, tooManyEvery int) (*platformtest.Server, error) {
	if tooManyEvery == 0 {
		tooManyEvery = DefaultPlatformTooManyEvery
	}
	return platformtest.Listen(addr, platformtest.Options{AppKey: AppKey, TooManyEvery: max(tooManyEvery, 0)})
}

// startPlatform starts (or takes) the platform of cfg and registers the
// tenants on it: Connect sites as their baseUrl, Forge installations'
// apiBaseUrl and app system token. Nil when cfg has none.
func startPlatform(cfg Config, tenants []*tenant) (p *platformtest.Server, stop func(), err error) {
	stop = func() {}
	switch {
	case cfg.Platform != nil:
		p = cfg.Platform
	case cfg.PlatformListen != "":
		if p, err = StartPlatform(cfg.PlatformListen, cfg.PlatformTooManyEvery); err != nil {
			return nil, nil, err
		}
		stop = p.Close
	default:
		return nil, stop, nil
	}
	for _, t := range tenants {
		if t.source == engine.SourceConnect {
			t.siteURL = p.AddConnectTenant(t.issuer, string(t.secret), t.product == "confluence")
			continue
		}
		t.sysToken = string(newSecret())
		t.apiBaseURL = p.AddForgeInstallation(t.issuer, t.sysToken)
	}
	return p, stop, nil
}

// platformWorkload puts w's transfers on p, as the platform holds them,
// keeps back the webhooks of cfg.UnsentUploads uploads (taking them out of
// w), and adds cfg.UnsentTransfers transfers of which nothing is sent. It
// draws from its own random source, so that the workload of a seed is
// the same with or without a platform.
func platformWorkload(cfg Config, seed int64, p *platformtest.Server, w *workload) *PlatformResult {
	r := rand.New(rand.NewPCG(uint64(seed), 0x706c6174666f726d)) // "platform"
	out := &PlatformResult{URL: p.URL, SettledByApp: map[string]int{}, Expect: cfg.ExpectSettled, all: cfg.SettleAll}

	// Uploads kept back: one each of transfers that stay in progress
	// (never errored, cancelled or settled), so that reconciliation can
	// still list them.
	withheld := map[*event]bool{}
	var quiet []*transfer
	for _, t := range w.transfers {
		if t.tenant.source == engine.SourceConnect && len(t.events) > 1 && !slices.ContainsFunc(t.events, func(e *event) bool {
			return e.kind == engine.KindListenerErrored || e.kind == engine.KindCancellationRequested || e.kind == engine.KindTransferSettled
		}) && slices.ContainsFunc(t.events, func(e *event) bool { return e.kind == engine.KindAppDataUploaded }) {
			quiet = append(quiet, t)
		}
	}
	r.Shuffle(len(quiet), func(i, j int) { quiet[i], quiet[j] = quiet[j], quiet[i] })
	for _, t := range quiet[:min(len(quiet), cfg.UnsentUploads)] {
		i := slices.IndexFunc(t.events, func(e *event) bool { return e.kind == engine.KindAppDataUploaded })
		e := t.events[i]
		withheld[e] = true
		t.events = slices.Delete(t.events, i, i+1)
		out.UnsentUploads = append(out.UnsentUploads, UnsentUpload{TransferID: t.id, S3Key: e.upload.Key})
	}
	if len(withheld) > 0 {
		w.events = slices.DeleteFunc(w.events, func(e *event) bool { return withheld[e] })
		w.jobs = slices.DeleteFunc(w.jobs, func(j job) bool { return j.ev != nil && withheld[j.ev] })
	}
	sort.Slice(out.UnsentUploads, func(i, j int) bool { return out.UnsentUploads[i].TransferID < out.UnsentUploads[j].TransferID })

	for _, t := range w.transfers {
		pt := platformtest.Transfer{ID: t.id, Tenant: t.tenant.issuer}
		settled, reason := "", ""
		for _, e := range append(slices.Clone(t.events), withheldOf(t, withheld)...) {
			switch e.kind {
			case engine.KindAppDataUploaded, engine.KindEventFileListUploaded:
				pt.Data = append(pt.Data, platform.AppData{S3Key: e.upload.Key, Label: e.upload.Label})
				if t.tenant.source == engine.SourceForge {
					pt.Messages = append(pt.Messages, e.id)
				}
			case engine.KindListenerErrored:
				reason = "errored"
				pt.Error = &platform.ListenerError{ExceptionType: pick(r, exceptionTypes), SafeStackTrace: "export failed"}
				if e.errInfo != nil {
					pt.Error = &platform.ListenerError{ExceptionType: e.errInfo.ExceptionType, SafeStackTrace: e.errInfo.SafeStackTrace}
				}
			case engine.KindCancellationRequested:
				if reason == "" {
					reason = "cancelled"
				}
			case engine.KindTransferSettled:
				settled = cmpOr(e.status, platform.Success)
			}
		}
		p.AddTransfer(pt)
		out.Transfers++
		switch {
		case settled != "":
			p.SettleByPlatform(t.id, settled)
		case reason != "" && t.tenant.source == engine.SourceConnect:
			out.Owing = append(out.Owing, OwedSettle{TransferID: t.id, Reason: reason})
		case cfg.SettleAll && t.tenant.source == engine.SourceConnect && len(pt.Data) > 0:
			// Past its uploads once they are imported; a transfer with
			// none is still being exported, as far as the app knows.
			out.Owing = append(out.Owing, OwedSettle{TransferID: t.id, Reason: "done"})
		}
	}
	out.Owed = len(out.Owing)

	var connect []*tenant
	for _, t := range w.tenants {
		if t.source == engine.SourceConnect {
			connect = append(connect, t)
		}
	}
	for i := 0; i < cfg.UnsentTransfers && len(connect) > 0; i++ {
		id := uuid(r)
		p.AddTransfer(platformtest.Transfer{ID: id, Tenant: connect[i%len(connect)].issuer, Data: []platform.AppData{{S3Key: uuid(r), Label: pick(r, uploadLabels)}}})
		out.Transfers++
		out.UnsentTransfers = append(out.UnsentTransfers, id)
	}
	sort.Strings(out.UnsentTransfers)
	return out
}

func withheldOf(t *transfer, withheld map[*event]bool) []*event {
	var out []*event
	for e := range withheld {
		if e.transfer == t {
			out = append(out, e)
		}
	}
	return out
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Settlement reads from p who settled r's transfers (it can be called
// again, after the app has had time to settle).
func (r *PlatformResult) Settlement(p *platformtest.Server) {
	r.SettledByApp, r.SettledByPlatform, r.SettledTwice, r.Resent, r.Unsettled = map[string]int{}, 0, 0, 0, nil
	for _, id := range p.Transfers() {
		t, _ := p.Get(id)
		switch {
		case t.SettledBy == "app":
			r.SettledByApp[t.Status]++
		case t.SettledBy == "platform":
			r.SettledByPlatform++
		}
		switch {
		case t.SettleCalls-t.SettleCallsCut > 1:
			r.SettledTwice++
		case t.SettleCalls > 1:
			r.Resent++
		}
	}
	for _, o := range r.Owing {
		if t, _ := p.Get(o.TransferID); t.Status == platform.InProgress {
			r.Unsettled = append(r.Unsettled, o.TransferID)
		}
	}
}

// waitSettled waits up to d until every owed transfer is settled.
func (r *PlatformResult) waitSettled(ctx context.Context, p *platformtest.Server, d time.Duration, progress func(string, ...any)) {
	deadline := time.Now().Add(d)
	progress("simulate: waiting up to %s for the app to settle %d %s\n", d, r.Owed, r.owedWhat())
	for {
		r.Settlement(p)
		if len(r.Unsettled) == 0 || time.Now().After(deadline) || !sleep(ctx, 200*time.Millisecond) {
			return
		}
	}
}

// problems are what Result.Err reports of the platform.
func (r *PlatformResult) problems() []string {
	var out []string
	if r.SettledTwice > 0 {
		out = append(out, fmt.Sprintf("%d transfers were settled twice by the app", r.SettledTwice))
	}
	if r.Expect && len(r.Unsettled) > 0 {
		out = append(out, fmt.Sprintf("%d of %d %s were not settled by the app", len(r.Unsettled), r.Owed, r.owedWhat()))
	}
	return out
}

// writeText writes the platform's lines of the summary.
func (r *PlatformResult) writeText(b *strings.Builder) {
	var by []string
	for _, st := range []string{platform.Success, platform.Failed, platform.Incomplete} {
		if n := r.SettledByApp[st]; n > 0 {
			by = append(by, fmt.Sprintf("%s×%d", st, n))
		}
	}
	app := 0
	for _, n := range r.SettledByApp {
		app += n
	}
	fmt.Fprintf(b, "platform:     %s, %d transfers; %d settled by the app (%s), %d by the platform, %d settled twice\n",
		r.URL, r.Transfers, app, strings.Join(by, " "), r.SettledByPlatform, r.SettledTwice)
	fmt.Fprintf(b, "              %d %s owed a settle, %d still unsettled; webhooks not sent: %d uploads, %d transfers\n",
		r.Owed, r.owedWhat(), len(r.Unsettled), len(r.UnsentUploads), len(r.UnsentTransfers))
}

// owedWhat names the transfers Owed counts.
func (r *PlatformResult) owedWhat() string {
	if r.all {
		return "Connect transfers"
	}
	return "errored or cancelled Connect transfers"
}
