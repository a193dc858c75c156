package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
)

// TestAuditExportHostilePayload: an event stored in the journal with a
// payload that is not valid UTF-8 JSON (as no ingest path writes, but a
// stream may hold) still exports as a valid JSON line, its exact bytes in
// payloadBase64; a valid payload stays verbatim.
func TestAuditExportHostilePayload(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	j, err := journal.Open(ctx, journal.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	payloads := [][]byte{
		[]byte(`{"ok":"fine"}`),
		[]byte("{\"bad\":\"\xff\xfe\"}"),
		[]byte("{\n  \"pretty\": 1\n}"),
		[]byte(`not json`),
	}
	for i, p := range payloads {
		e := &engine.Event{ID: "ev-" + string(rune('a'+i)), Source: engine.SourceConnect, Kind: "transfer_progress",
			TransferID: "t1", Issuer: "client-1", ReceivedAt: time.Now(), Payload: json.RawMessage(p)}
		if _, err := j.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()

	out := filepath.Join(t.TempDir(), "audit.jsonl")
	var stdout, stderr lockedBuffer
	if err := run(ctx, []string{"transferd", "audit", "export", "--data", dir, "--out", out, "--quiet"}, noEnv, strings.NewReader(""), &stdout, &stderr); err != nil {
		t.Fatalf("audit export: %v\n%s", err, stderr.String())
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var n int
	for sc.Scan() {
		if !json.Valid(sc.Bytes()) || !bytes.Equal(bytes.ToValidUTF8(sc.Bytes(), nil), sc.Bytes()) {
			t.Fatalf("line %d is not valid UTF-8 JSON: %q", n+1, sc.Bytes())
		}
		var line struct {
			Payload       json.RawMessage `json:"payload"`
			PayloadBase64 *string         `json:"payloadBase64"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		want := payloads[n]
		var got []byte
		if line.PayloadBase64 != nil {
			if string(line.Payload) != "null" {
				t.Errorf("line %d: payload %s beside payloadBase64", n+1, line.Payload)
			}
			if got, err = base64.StdEncoding.DecodeString(*line.PayloadBase64); err != nil {
				t.Fatal(err)
			}
		} else {
			got = line.Payload
		}
		if !bytes.Equal(got, want) {
			t.Errorf("line %d: payload bytes %q, want %q", n+1, got, want)
		}
		if (n == 0) != (line.PayloadBase64 == nil) {
			t.Errorf("line %d: payloadBase64 %v", n+1, line.PayloadBase64 != nil)
		}
		n++
	}
	if n != len(payloads) {
		t.Fatalf("exported %d lines, want %d", n, len(payloads))
	}
}
