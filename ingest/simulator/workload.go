package simulator

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/transferd/transferd/engine"
)

// workload is everything a run delivers, drawn from the seed before the
// first request: the transfers and their events, and the order of the
// requests.
type workload struct {
	tenants   []*tenant
	transfers []*transfer
	events    []*event // every distinct good event
	jobs      []job    // the requests in sending order, duplicates and bad requests mixed in
	bad       int      // bad requests, deferred ones included
	deferred  int      // bad requests sent only once their target transfer exists
}

// transfer is one simulated transfer.
type transfer struct {
	id        string
	tenant    *tenant
	original  *transfer // the transfer this one re-runs, nil for an original
	migration migration
	hasReruns bool
	// needsAction: it errors or has its cancellation requested and is
	// never settled, so that the server shows it as needing the partner.
	needsAction bool
	events      []*event

	acked    atomic.Bool   // some event of it was acknowledged
	deferred []*badRequest // cross-tenant requests waiting for acked
}

type migration struct {
	id, scopeID, name, cloudURL string
	createdAt                   time.Time
}

// event is one good event: what it says, and how its deliveries went.
type event struct {
	transfer *transfer
	kind     engine.Kind
	id       string // the identity the server derives: messageId or sha256 of the payload
	body     []byte
	details  bool                  // carries migrationDetails
	upload   *engine.Upload        // uploaded kinds
	errInfo  *engine.TransferError // Forge listener-errored
	status   string                // transfer-settled, when it names one

	acks atomic.Int32  // 200 answers
	seq  atomic.Uint64 // the stream sequence of the first 200
}

// job is one request of the main queue: a good event (possibly a copy) or
// a bad request.
type job struct {
	ev  *event
	bad *badRequest
}

// Lifecycle odds: how often a transfer has each kind of event.
const (
	pTriggered      = 0.97
	pFileList       = 0.25 // Forge simplified migration
	pExportDone     = 0.6  // Forge
	pErrored        = 0.08
	pCancelled      = 0.08
	pSettled        = 0.85
	pNoStatus       = 0.1
	pUnknownKind    = 0.05
	pConnectMsgID   = 0.7 // the seeds' Connect examples carry none
	pForgeMsgID     = 0.95
	pForgeWrapped   = 0.3
	pTriple         = 0.2 // of duplicated events, those sent three times
	pAdjacent       = 0.5 // of extra copies, those sent next to another (concurrently)
	pUnlabelled     = 0.2
	pUnknownDetails = 0.5
	// pNeedsAction is the share of transfers left errored or cancelling
	// and unsettled, drawn exactly (at least one from 20 transfers on) so
	// that every default run shows some needing action; others may end so
	// too, by chance.
	pNeedsAction = 0.03
)

// needsActionCount is the number of transfers of n left needing action.
func needsActionCount(n int) int {
	k := int(math.Round(pNeedsAction * float64(n)))
	if n >= 20 {
		k = max(k, 1)
	}
	return k
}

var (
	uploadLabels   = []string{"attachments", "custom-fields", "workflow-config", "app-settings", "user-mappings"}
	fileListLabels = []string{"MAPPINGS", "DATABASE", "BINARY"}
	planNames      = []string{"Migrate Jira projects", "Confluence spaces wave 2", "Final cutover", "Pilot: design team", "Migration of my Confluence page"}
	exceptionTypes = []string{"java.lang.IllegalStateException", "java.lang.NullPointerException", "com.example.app.ExportException"}
)

// buildWorkload draws the transfers, their events and the order of the
// requests from r.
func buildWorkload(cfg Config, r *rand.Rand, tenants []*tenant, now time.Time) (*workload, error) {
	w := &workload{tenants: tenants}
	n := cfg.Transfers
	reruns := min(int(math.Round(cfg.Reruns*float64(n))), n-1)
	isRerun := make([]bool, n)
	for _, i := range r.Perm(n - 1)[:reruns] {
		isRerun[i+1] = true
	}
	originals := 0
	base := now.Truncate(time.Minute)
	for i := range n {
		t := &transfer{id: uuid(r)}
		if isRerun[i] {
			// Any earlier transfer, re-runs included: re-runs of re-runs.
			o := w.transfers[r.IntN(i)]
			t.original, t.tenant, t.migration = o, o.tenant, o.migration
			o.hasReruns = true
		} else {
			t.tenant = tenants[originals%len(tenants)]
			originals++
			t.migration = migration{
				id: uuid(r), scopeID: uuid(r), name: pick(r, planNames), cloudURL: t.tenant.cloudURL,
				createdAt: base.Add(-time.Duration(r.Int64N(int64(72 * time.Hour)))).Truncate(time.Second),
			}
		}
		w.transfers = append(w.transfers, t)
	}
	// Transfers that are re-run are settled: the platform re-runs only
	// those settled FAILED or INCOMPLETE.
	var open []*transfer
	for _, t := range w.transfers {
		if !t.hasReruns {
			open = append(open, t)
		}
	}
	r.Shuffle(len(open), func(i, j int) { open[i], open[j] = open[j], open[i] })
	for _, t := range open[:min(len(open), needsActionCount(n))] {
		t.needsAction = true
	}
	seen := make(map[string]bool)
	for _, t := range w.transfers {
		if err := w.lifecycle(r, t); err != nil {
			return nil, err
		}
		for _, e := range t.events {
			if seen[e.id] {
				return nil, fmt.Errorf("simulator: two events with identity %s (a bug in the generator)", e.id)
			}
			seen[e.id] = true
			w.events = append(w.events, e)
		}
	}

	var units [][]job
	for _, e := range w.events {
		units = append(units, []job{{ev: e}})
		if !chance(r, cfg.Duplicates) {
			continue
		}
		extra := 1
		if chance(r, pTriple) {
			extra = 2
		}
		for range extra {
			if chance(r, pAdjacent) {
				units[len(units)-1] = append(units[len(units)-1], job{ev: e})
			} else {
				units = append(units, []job{{ev: e}})
			}
		}
	}
	bad, err := w.badRequests(r, int(math.Round(cfg.Bad*float64(len(w.events)))))
	if err != nil {
		return nil, err
	}
	for _, b := range bad {
		w.bad++
		if b.deferred {
			w.deferred++
			b.target.deferred = append(b.target.deferred, b)
			continue
		}
		units = append(units, []job{{bad: b}})
	}
	r.Shuffle(len(units), func(i, j int) { units[i], units[j] = units[j], units[i] })
	for _, u := range units {
		w.jobs = append(w.jobs, u...)
	}
	return w, nil
}

// lifecycle draws t's events. An original that is re-run later is always
// settled as FAILED or INCOMPLETE: only those can be re-run. One that needs
// action errors or has its cancellation requested (or both) and is never
// settled.
func (w *workload) lifecycle(r *rand.Rand, t *transfer) error {
	forge := t.tenant.source == engine.SourceForge
	add := func(kind engine.Kind, extra map[string]any) error {
		e, err := w.newEvent(r, t, kind, extra)
		if err != nil {
			return err
		}
		t.events = append(t.events, e)
		return nil
	}
	if chance(r, pTriggered) {
		if err := add(engine.KindListenerTriggered, nil); err != nil {
			return err
		}
	}
	uploads := []int{0, 1, 1, 1, 2, 2, 2, 3, 3, 5}[r.IntN(10)]
	for range uploads {
		extra := map[string]any{uploadKeyField(t.tenant.source): uuid(r)}
		if !chance(r, pUnlabelled) {
			extra["label"] = pick(r, uploadLabels)
		}
		if err := add(engine.KindAppDataUploaded, extra); err != nil {
			return err
		}
	}
	if forge && chance(r, pFileList) {
		for i := range 1 + r.IntN(3) {
			extra := map[string]any{"key": uuid(r), "label": fileListLabels[i]}
			if err := add(engine.KindEventFileListUploaded, extra); err != nil {
				return err
			}
		}
	}
	if forge && chance(r, pExportDone) {
		if err := add(engine.KindExportPhaseCompleted, nil); err != nil {
			return err
		}
	}
	errored, cancelled := chance(r, pErrored), chance(r, pCancelled)
	if t.needsAction && !errored && !cancelled {
		errored = r.IntN(2) == 0
		cancelled = !errored
	}
	if errored {
		var extra map[string]any
		if forge {
			exc := pick(r, exceptionTypes)
			extra = map[string]any{"transferError": map[string]any{
				"exceptionType":  exc,
				"safeStackTrace": exc + ": export failed\n\tat com.example.app.MigrationListener.onStartAppMigration(MigrationListener.java:" + fmt.Sprint(40+r.IntN(200)) + ")",
			}}
		}
		if err := add(engine.KindListenerErrored, extra); err != nil {
			return err
		}
	}
	if cancelled {
		if err := add(engine.KindCancellationRequested, nil); err != nil {
			return err
		}
	}
	if !t.needsAction && (t.hasReruns || chance(r, pSettled)) {
		var status string
		switch x := r.Float64(); {
		case t.hasReruns || errored || cancelled:
			status = pick(r, []string{"FAILED", "INCOMPLETE"})
		case x < 0.85:
			status = "SUCCESS"
		case x < 0.92:
			status = "FAILED"
		case x < 0.97:
			status = "INCOMPLETE"
		default:
			status = "TIMED_OUT"
		}
		var extra map[string]any
		if t.hasReruns || !chance(r, pNoStatus) {
			extra = map[string]any{"status": status}
		}
		if err := add(engine.KindTransferSettled, extra); err != nil {
			return err
		}
	}
	if chance(r, pUnknownKind) {
		if err := add(engine.KindUnknown, map[string]any{"progress": map[string]any{"percent": 1 + r.IntN(99), "message": "exporting"}}); err != nil {
			return err
		}
	}
	return nil
}

// newEvent builds one event of t in its tenant's spelling and works out its
// identity with engine.Parse, as the server will.
func (w *workload) newEvent(r *rand.Rand, t *transfer, kind engine.Kind, extra map[string]any) (*event, error) {
	src := t.tenant.source
	fields := eventFields(r, t, t.tenant, kind, extra)
	_, hasDetails := fields["migrationDetails"]
	body := encodeEvent(r, src, fields)
	parsed, err := engine.Parse(src, body)
	if err != nil {
		return nil, fmt.Errorf("simulator: generated a %s event the engine refuses (a bug in the generator): %w\n%s", kind, err, body)
	}
	if parsed.Kind != kind {
		return nil, fmt.Errorf("simulator: generated a %s event the engine reads as %s (a bug in the generator)", kind, parsed.Kind)
	}
	e := &event{transfer: t, kind: kind, id: parsed.ID, body: body, details: hasDetails}
	switch kind {
	case engine.KindAppDataUploaded, engine.KindEventFileListUploaded:
		u := engine.Upload{Key: extra[uploadKeyField(src)].(string)}
		if kind == engine.KindEventFileListUploaded {
			u.Key, u.Kind = extra["key"].(string), "event-file-list"
		}
		u.Label, _ = extra["label"].(string)
		e.upload = &u
	case engine.KindListenerErrored:
		if te, ok := extra["transferError"].(map[string]any); ok {
			e.errInfo = &engine.TransferError{ExceptionType: te["exceptionType"].(string), SafeStackTrace: te["safeStackTrace"].(string)}
		}
	case engine.KindTransferSettled:
		e.status, _ = extra["status"].(string)
	}
	return e, nil
}

// eventFields are the attributes of an event of t sent by sender (t's own
// tenant, except for cross-tenant requests), in sender's spelling.
func eventFields(r *rand.Rand, t *transfer, sender *tenant, kind engine.Kind, extra map[string]any) map[string]any {
	f := map[string]any{
		"eventType":        eventType(sender.source, kind),
		"transferId":       t.id,
		"serverAppVersion": serverAppVersion,
	}
	connect := sender.source == engine.SourceConnect
	if connect {
		f["cloudAppKey"] = simulatorAppKey
	}
	if connect && chance(r, pConnectMsgID) || !connect && chance(r, pForgeMsgID) {
		f["messageId"] = uuid(r)
	}
	if t.original != nil {
		f["originalTransferId"] = t.original.id
	}
	if kind != engine.KindUnknown || chance(r, pUnknownDetails) {
		f["migrationDetails"] = migrationDetails(t, sender)
	}
	for k, v := range extra {
		f[k] = v
	}
	return f
}

// migrationDetails is t's migrationDetails as sender spells it: createdAt
// in seconds and the client keys for Connect (the tenant's own product key,
// "unknown" for the other product), milliseconds and no client keys for
// Forge.
func migrationDetails(t *transfer, sender *tenant) map[string]any {
	m := t.migration
	d := map[string]any{
		"migrationId":      m.id,
		"migrationScopeId": m.scopeID,
		"name":             m.name,
		"cloudUrl":         m.cloudURL,
	}
	if sender.source == engine.SourceForge {
		d["createdAt"] = m.createdAt.UnixMilli()
		return d
	}
	d["createdAt"] = m.createdAt.Unix()
	owner := t.tenant
	if owner.source != engine.SourceConnect {
		owner = sender
	}
	d["jiraClientKey"], d["confluenceClientKey"] = "unknown", "unknown"
	if owner.product == "confluence" {
		d["confluenceClientKey"] = owner.issuer
	} else {
		d["jiraClientKey"] = owner.issuer
	}
	return d
}

// encodeEvent marshals fields; Forge events are sometimes wrapped as
// {"payload": …}, as product events sent to remotes are.
func encodeEvent(r *rand.Rand, src engine.Source, fields map[string]any) []byte {
	b, err := json.Marshal(fields)
	if err != nil {
		panic("simulator: marshal event: " + err.Error()) // strings, numbers and maps only
	}
	if src == engine.SourceForge && chance(r, pForgeWrapped) {
		b, _ = json.Marshal(map[string]json.RawMessage{"payload": b})
	}
	return b
}

// eventType spells kind for src; KindUnknown gets a type the platform might
// add one day.
func eventType(src engine.Source, kind engine.Kind) string {
	if src == engine.SourceConnect {
		if kind == engine.KindUnknown {
			return "transfer-progress-reported"
		}
		return string(kind)
	}
	switch kind {
	case engine.KindListenerTriggered:
		return "avi:ecosystem.migration:triggered:listener"
	case engine.KindAppDataUploaded:
		return "avi:ecosystem.migration:uploaded:app_data"
	case engine.KindEventFileListUploaded:
		return "avi:ecosystem.migration:uploaded:event_file_list"
	case engine.KindExportPhaseCompleted:
		return "avi:ecosystem.migration:completed:export_phase"
	case engine.KindListenerErrored:
		return "avi:ecosystem.migration:errored:listener"
	case engine.KindCancellationRequested:
		return "avi:ecosystem.migration:requested:transfer_cancellation"
	case engine.KindTransferSettled:
		return "avi:ecosystem.migration:settled:transfer"
	}
	return "avi:ecosystem.migration:reported:transfer_progress"
}

func uploadKeyField(src engine.Source) string {
	if src == engine.SourceConnect {
		return "s3Key"
	}
	return "key"
}

func chance(r *rand.Rand, p float64) bool { return p > 0 && r.Float64() < p }

func pick[T any](r *rand.Rand, list []T) T { return list[r.IntN(len(list))] }
