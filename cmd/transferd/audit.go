package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"
	"unicode/utf8"

	"github.com/transferd/transferd/engine/journal"
)

const auditAbout = `Export the MIGRATIONS stream as JSON Lines, one envelope per line in stream
order, with its sequence and the payload bytes exactly as they were received:

  {"seq":N,"v":1,"id":…,"source":…,"kind":…,"transferId":…,"issuer":…,"receivedAt":…,"payload":<raw>}

Every line is valid JSON. A payload that is not valid UTF-8 JSON on one line
(invalid UTF-8, not JSON, or holding a line break) is written as
"payload":null,"payloadBase64":"<the exact bytes, standard base64>" instead.

  transferd audit export [--transfer-id ID] [--migration-id ID] [--since T] [--until T] [--out FILE]

Filters combine; times are RFC 3339. Reads the data directory (stop serve
first) or an external NATS with --nats-url.`

func runAudit(ctx context.Context, args []string, getenv env, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "export" {
		fs := newFlags("audit export", auditAbout, stderr)
		if err := parse(fs, args, getenv); err != nil {
			return err
		}
		return usageError("audit: want the export subcommand")
	}
	fs := newFlags("audit export", auditAbout, stderr)
	var store storeFlags
	store.register(fs)
	var transferID, migrationID, since, until, out string
	var quiet bool
	fs.StringVar(&transferID, "transfer-id", "", "only this transfer's events")
	fs.StringVar(&migrationID, "migration-id", "", "only events whose migrationDetails name this migration")
	fs.StringVar(&since, "since", "", "only events received at or after this RFC 3339 `time`")
	fs.StringVar(&until, "until", "", "only events received before this RFC 3339 `time`")
	fs.StringVar(&out, "out", "", "write to this `file` (created 0600) instead of standard output")
	fs.BoolVar(&quiet, "quiet", false, "no progress on standard error")
	if err := parse(fs, args[1:], getenv); err != nil {
		return err
	}
	var from, to time.Time
	var err error
	if since != "" {
		if from, err = time.Parse(time.RFC3339Nano, since); err != nil {
			return usageError("--since: " + err.Error())
		}
	}
	if until != "" {
		if to, err = time.Parse(time.RFC3339Nano, until); err != nil {
			return usageError("--until: " + err.Error())
		}
	}
	filter := ""
	if transferID != "" {
		filter = journal.TransferEventsFilter(transferID)
	}

	w := stdout
	if out != "" {
		f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	log, _ := newLogger(stderr, "warn")
	j, err := store.openJournal(ctx, log)
	if err != nil {
		return err
	}
	defer j.Close()
	total, err := j.LastSeq(ctx)
	if err != nil {
		return err
	}
	var prog *progress
	if !quiet {
		prog = newProgress(stderr, "events read")
		defer prog.finish()
	}

	bw := bufio.NewWriterSize(w, 1<<16)
	var n int
	for env, err := range j.Scan(ctx, filter) {
		if err != nil {
			return fmt.Errorf("audit export: after %d events: %w", n, err)
		}
		if prog != nil {
			prog.update(env.Seq, total)
		}
		if !from.IsZero() && env.ReceivedAt.Before(from) || !to.IsZero() && !env.ReceivedAt.Before(to) {
			continue
		}
		if migrationID != "" {
			ev, _ := env.Event()
			if ev.Migration == nil || ev.Migration.MigrationID != migrationID {
				continue
			}
		}
		if err := writeAuditLine(bw, env); err != nil {
			return err
		}
		n++
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "exported %d events\n", n)
	return nil
}

// writeAuditLine writes env as one JSON line whose payload is the received
// bytes, untouched; bytes that would not keep the line valid JSON (invalid
// UTF-8, not JSON, a line break) go in payloadBase64 instead, with a null
// payload.
func writeAuditLine(w *bufio.Writer, env journal.Envelope) error {
	head, err := json.Marshal(struct {
		Seq        uint64    `json:"seq"`
		V          int       `json:"v"`
		ID         string    `json:"id"`
		Source     string    `json:"source"`
		Kind       string    `json:"kind"`
		TransferID string    `json:"transferId"`
		Issuer     string    `json:"issuer"`
		ReceivedAt time.Time `json:"receivedAt"`
	}{env.Seq, env.V, env.ID, string(env.Source), string(env.Kind), env.TransferID, env.Issuer, env.ReceivedAt})
	if err != nil {
		return err
	}
	w.Write(head[:len(head)-1])
	if rawPayloadOK(env.Payload) {
		w.WriteString(`,"payload":`)
		w.Write(env.Payload)
	} else {
		w.WriteString(`,"payload":null,"payloadBase64":"`)
		w.WriteString(base64.StdEncoding.EncodeToString(env.Payload))
		w.WriteByte('"')
	}
	_, err = w.WriteString("}\n")
	return err
}

// rawPayloadOK reports whether p can be written verbatim into a JSON line:
// non-empty, valid UTF-8, valid JSON, and on one line.
func rawPayloadOK(p []byte) bool {
	return len(p) > 0 && utf8.Valid(p) && json.Valid(p) && bytes.IndexAny(p, "\r\n") < 0
}
