package driver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/ingest/platform"
)

// announced are t's uploads that a platform event announced or
// reconciliation discovered (not only reported).
func announced(t *engine.Transfer) []engine.Upload {
	var out []engine.Upload
	for _, u := range t.Uploads {
		if u.Announced() {
			out = append(out, u)
		}
	}
	return out
}

// uploadsDecision is the settle of a Connect transfer whose uploads are
// over: past its uploads (export-phase-completed, or at least one upload
// and UploadsQuiet without a platform event) and every upload done or
// dead (DeadLetterHold past). SUCCESS when all are done, else
// UploadFailedStatus naming the dead ones. A transfer with no upload and
// export completed has nothing to import: SUCCESS.
func (d *Driver) uploadsDecision(t *engine.Transfer, now time.Time) *decision {
	ups := announced(t)
	if !t.ExportCompleted && (len(ups) == 0 || now.Sub(t.LastReceivedAt) < d.cfg.UploadsQuiet) {
		return nil
	}
	var dead []string
	for _, u := range ups {
		switch {
		case u.Work != nil && u.Work.Status == engine.WorkDone:
		case u.Work.Dead():
			if now.Before(u.Work.At.Add(d.cfg.DeadLetterHold)) {
				return nil
			}
			m := u.Key
			if u.Label != "" {
				m += " (" + u.Label + ")"
			}
			if u.Work.Message != "" {
				m += ": " + u.Work.Message
			}
			dead = append(dead, m)
		default:
			return nil // still to do
		}
	}
	if len(dead) == 0 {
		return &decision{Status: platform.Success, Message: strconv.Itoa(len(ups)) + " uploads imported", Reason: "done"}
	}
	msg := fmt.Sprintf("%d of %d uploads failed: %s", len(dead), len(ups), strings.Join(dead, "; "))
	return &decision{Status: d.cfg.UploadFailedStatus, Message: truncate(msg, 4096), Reason: "upload-failed"}
}

// progress reports IN_PROGRESS with percent (done + the fractions the
// importers reported of the uploads under way) / total, 1–99, when it is
// above what the platform took and ProgressEvery has passed since this
// driver's last report for t.
func (d *Driver) progress(ctx context.Context, t *engine.Transfer, now time.Time, rep *Report) error {
	ups := announced(t)
	if len(ups) == 0 {
		return nil
	}
	done, hundredths := 0, 0
	for _, u := range ups {
		switch {
		case u.Work == nil:
		case u.Work.Status == engine.WorkDone || u.Work.Dead():
			done++
			hundredths += 100
		case u.Work.Status == engine.WorkProgress:
			hundredths += u.Work.Percent
		}
	}
	pct := min(max(hundredths/len(ups), 1), 99)
	if t.Progress != nil && pct <= t.Progress.Percent {
		return nil
	}
	d.mu.Lock()
	last, busy := d.progressAt[t.TransferID], d.busy[t.TransferID]
	if busy || (!last.IsZero() && now.Sub(last) < d.cfg.ProgressEvery) {
		d.mu.Unlock()
		return nil
	}
	d.progressAt[t.TransferID] = now
	d.mu.Unlock()
	site, err := d.site(ctx, t)
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("%d of %d uploads imported", done, len(ups))
	cctx, ccancel := graceful(ctx)
	err = d.cfg.Client.ReportProgress(cctx, site, t.TransferID, platform.Progress{Status: platform.InProgress, Percent: pct, Message: msg})
	cut := cutShort(cctx, err)
	ccancel()
	call := d.lastCall("progress", t.TransferID)
	if cut {
		return ctx.Err()
	}
	ctx, cancel := recording(ctx)
	defer cancel()
	pc := engine.PlatformCall{
		Op: "progress", Status: platform.InProgress, Percent: pct, Message: msg, Outcome: outcomeOf(err),
		HTTPStatus: call.Status, Attempts: call.Attempts, Unanswered: call.Unanswered, At: d.cfg.Now().UTC(),
	}
	if err != nil {
		pc.Error = truncate(err.Error(), 1024)
	}
	if pc.Outcome == engine.OutcomeOK {
		rep.Progressed++
	}
	return d.record(ctx, t, &pc)
}

// ForgeWindow is the platform's limit for each Forge message status.
const ForgeWindow = 15 * time.Minute

// forgeClaim is the decision a Forge message-status claim records.
type forgeClaim struct {
	Status   string    `json:"status"`
	Claimant string    `json:"claimant"`
	At       time.Time `json:"at"`
}

// forge acknowledges t's Forge upload messages whose work is over (done:
// SUCCESS, dead: FAILED) or whose window is about to end (ForgeTimeout),
// each message once: a claim per message (journal.Claim "forge-status")
// decides its status, as for settles.
func (d *Driver) forge(ctx context.Context, t *engine.Transfer, now time.Time, rep *Report) error {
	if d.cfg.ForgeCredential == nil {
		return nil
	}
	want := map[string]string{} // messageId → status
	for _, u := range announced(t) {
		status := ""
		switch {
		case u.Work != nil && u.Work.Status == engine.WorkDone:
			status = platform.Success
		case u.Work.Dead():
			status = platform.Failed
		case u.ReceivedAt != nil && now.After(u.ReceivedAt.Add(ForgeWindow-d.cfg.ForgeAckBefore)):
			rep.ForgeDue++
			if d.cfg.ForgeTimeout != "failed" {
				d.log.Warn("driver: Forge message close to its 15-minute window without a report", "transferId", t.TransferID, "key", u.Key, "receivedAt", u.ReceivedAt)
				continue
			}
			status = platform.Failed
		default:
			continue
		}
		for _, id := range u.MessageIDs {
			d.mu.Lock()
			done := d.acked[t.TransferID+"\x00"+id]
			d.mu.Unlock()
			if _, ok := t.ForgeAcks[id]; !ok && !done {
				want[id] = status
			}
		}
	}
	if len(want) == 0 {
		return nil
	}
	key := "forge:" + t.TransferID
	d.mu.Lock()
	if d.busy[key] || now.Before(d.retryAt[key]) {
		d.mu.Unlock()
		return nil
	}
	d.busy[key] = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.busy, key)
		d.mu.Unlock()
	}()
	owner, err := d.cfg.Journal.Owner(ctx, t.TransferID)
	if err != nil {
		return err
	}
	if owner != string(engine.SourceForge)+":"+t.Issuer && owner != t.Issuer {
		return fmt.Errorf("driver: transfer %s is bound to %q, not its issuer %q: not acknowledged", t.TransferID, owner, t.Issuer)
	}
	inst, ok := d.cfg.ForgeCredential(t.Issuer)
	if !ok {
		rep.NoCredential++
		d.mu.Lock()
		logged := d.noCred[t.TransferID]
		d.noCred[t.TransferID] = true
		d.mu.Unlock()
		if !logged {
			d.log.Warn("driver: no credential of the Forge installation yet (its next event brings one): message status not sent",
				"transferId", t.TransferID, "installation", t.Issuer, "messages", len(want))
		}
		return nil
	}
	var final map[string]bool // messages with a final outcome in the journal, read when needed
	byStatus := map[string][]string{}
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		value, _ := json.Marshal(forgeClaim{Status: want[id], Claimant: d.claimant, At: now.UTC()})
		claim, won, err := d.cfg.Journal.Claim(ctx, "forge-status", t.TransferID+"/"+id, value)
		if err != nil {
			return err
		}
		status := want[id]
		if !won {
			var held forgeClaim
			if err := json.Unmarshal(claim.Value, &held); err != nil || held.Status == "" {
				return fmt.Errorf("driver: the forge-status claim of %s/%s does not decode: %v", t.TransferID, id, err)
			}
			if final == nil {
				if final, err = d.forgeOutcomes(ctx, t.TransferID); err != nil {
					return err
				}
			}
			if final[id] {
				continue // recorded; the projection has not caught up
			}
			if held.Claimant != d.claimant && now.Sub(held.At) < d.cfg.Lease {
				continue // another driver holds it
			}
			status = held.Status
		}
		byStatus[status] = append(byStatus[status], id)
	}
	for _, status := range []string{platform.Failed, platform.Success} {
		if ids := byStatus[status]; len(ids) > 0 {
			if err := d.messageStatus(ctx, t, inst, status, ids, now, rep); err != nil {
				return err
			}
		}
	}
	return nil
}

// forgeOutcomes reads the journal's forge.status outcomes of transferID:
// the messages with a final one.
func (d *Driver) forgeOutcomes(ctx context.Context, transferID string) (map[string]bool, error) {
	out := map[string]bool{}
	for env, err := range d.cfg.Journal.Scan(ctx, journal.EventFilter(transferID, engine.KindPlatformCalled)) {
		if err != nil {
			var corrupt *journal.CorruptError
			if errors.As(err, &corrupt) {
				continue
			}
			return nil, err
		}
		if env.Source != engine.SourceApp {
			continue
		}
		e, err := env.Event()
		if err != nil || e.Call == nil || e.Call.Op != "forge.status" || e.Call.Outcome == engine.OutcomeExhausted {
			continue
		}
		for _, id := range e.Call.MessageIDs {
			out[id] = true
		}
	}
	return out, nil
}

// messageStatus sends one Forge message status and records it.
func (d *Driver) messageStatus(ctx context.Context, t *engine.Transfer, inst platform.ForgeInstallation, status string, ids []string, now time.Time, rep *Report) error {
	for len(ids) > 0 {
		batch := ids[:min(len(ids), 1000)]
		ids = ids[len(batch):]
		cctx, ccancel := graceful(ctx)
		err := d.cfg.Client.MessageStatus(cctx, inst, t.TransferID, status, batch)
		cut := cutShort(cctx, err)
		ccancel()
		call := d.lastCall("forge.status", t.TransferID)
		if cut {
			return ctx.Err()
		}
		rctx, cancel := recording(ctx)
		pc := engine.PlatformCall{
			Op: "forge.status", Status: status, MessageIDs: batch, Outcome: outcomeOf(err),
			HTTPStatus: call.Status, Attempts: call.Attempts, Unanswered: call.Unanswered, At: d.cfg.Now().UTC(),
		}
		if err != nil {
			pc.Error = truncate(err.Error(), 1024)
		}
		err = d.record(rctx, t, &pc)
		cancel()
		if err != nil {
			return err
		}
		key := "forge:" + t.TransferID
		d.mu.Lock()
		if pc.Outcome == engine.OutcomeExhausted {
			n := d.tries[key] + 1
			d.tries[key] = n
			d.retryAt[key] = now.Add(min(d.cfg.RetryBase<<min(n-1, 20), d.cfg.RetryMax))
		} else {
			delete(d.tries, key)
			for _, id := range batch {
				d.acked[t.TransferID+"\x00"+id] = true
			}
		}
		d.mu.Unlock()
		if pc.Outcome == engine.OutcomeOK {
			rep.ForgeAcked += len(batch)
		}
		d.log.Info("driver: Forge message status", "transferId", t.TransferID, "status", status,
			"messages", len(batch), "outcome", pc.Outcome, "httpStatus", pc.HTTPStatus)
	}
	return nil
}
