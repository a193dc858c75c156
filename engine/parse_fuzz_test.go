package engine_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transferd/transferd/engine"
)

// FuzzParse checks that Parse never panics and that whatever it accepts is a
// valid event: a known source and kind, a transfer id that is one subject
// token, an identity, the payload kept verbatim, and uploads with a key.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "payloads", "*.json"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(false, b)
		f.Add(true, b)
	}
	f.Add(true, []byte(`{"payload":{"eventType":"avi:ecosystem.migration:settled:transfer","transferId":"t","status":"SUCCESS"}}`))
	f.Add(false, []byte(`{"eventType":"transfer-cancellation-requested","transferId":"t","originalTransferId":"o"}`))
	f.Add(false, []byte(`{"eventType":"x","transferId":"t","migrationDetails":{"createdAt":"2026-01-02T03:04:05Z"}}`))
	f.Add(false, []byte(`{"eventType":"x","transferId":"t","migrationDetails":{"createdAt":"9999-12-31T23:59:59Z"}}`))
	f.Add(true, []byte(`{"eventType":"x","transferId":"t","migrationDetails":{"createdAt":3e14}}`))
	f.Add(true, []byte(`{"eventType":"x","transferId":"t","migrationDetails":{"createdAt":"4102444799999"}}`))
	f.Add(false, []byte(`{"eventType":"x","transferId":"t","messageId":"a\r\nb"}`))
	f.Add(false, []byte(`{"eventType":"x","transferId":"t","migrationDetails":{"jiraClientKey":"a b"}}`))
	f.Fuzz(func(t *testing.T, forge bool, body []byte) {
		src := engine.SourceConnect
		if forge {
			src = engine.SourceForge
		}
		e, err := engine.Parse(src, body)
		if err != nil {
			if !engine.IsValidation(err) {
				t.Fatalf("error %v is not a validation error", err)
			}
			return
		}
		if e.Source != src || !e.Kind.Valid() || e.EventType == "" || e.ID == "" {
			t.Fatalf("accepted an invalid event: %+v", e)
		}
		if !engine.ValidID(e.TransferID) || (e.OriginalTransferID != "" && !engine.ValidID(e.OriginalTransferID)) {
			t.Fatalf("accepted transfer id %q / original %q", e.TransferID, e.OriginalTransferID)
		}
		if string(e.Payload) != string(body) {
			t.Fatal("payload not kept verbatim")
		}
		if (e.Kind == engine.KindAppDataUploaded || e.Kind == engine.KindEventFileListUploaded) && (e.Upload == nil || e.Upload.Key == "") {
			t.Fatalf("upload without key: %+v", e)
		}
		if e.MessageID != "" && (len(e.MessageID) > engine.MaxMessageIDLength || strings.ContainsAny(e.MessageID, " \r\n")) {
			t.Fatalf("accepted messageId %q", e.MessageID)
		}
		if m := e.Migration; m != nil && !m.CreatedAt.IsZero() && (m.CreatedAt.Before(engine.MinCreatedAt) || !m.CreatedAt.Before(engine.MaxCreatedAt)) {
			t.Fatalf("accepted createdAt %v", m.CreatedAt)
		}
		again, err := engine.Parse(src, body)
		if err != nil || again.ID != e.ID || again.Kind != e.Kind || again.Key() != e.Key() {
			t.Fatalf("parse not deterministic: %v", err)
		}
		tr := engine.NewTransfer(e.TransferID)
		tr.Apply(e)
		if _, err := json.Marshal(tr.View()); err != nil {
			t.Fatalf("view does not encode: %v", err)
		}
		if _, err := engine.UnmarshalTransfer(tr.MarshalCanonical()); err != nil {
			t.Fatalf("canonical encoding does not decode: %v", err)
		}
	})
}
