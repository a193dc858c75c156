package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/engine"
)

// TestAppendViewMatchesEngine checks that the spliced view is byte for
// byte json.Marshal(t.View()) for every subset of a transfer's possible
// facts.
func TestAppendViewMatchesEngine(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	details := `"migrationDetails":{"migrationId":"m","migrationScopeId":"s","name":"n <&>","createdAt":1772366400000,"cloudUrl":"https://x"}`
	payloads := []string{
		`{"eventType":"listener-triggered","transferId":"t","messageId":"1",` + details + `}`,
		`{"eventType":"app-data-uploaded","transferId":"t","messageId":"2","s3Key":"k\"1","label":"l"}`,
		`{"eventType":"listener-errored","transferId":"t","messageId":"3"}`,
		`{"eventType":"transfer-cancellation-requested","transferId":"t","messageId":"4"}`,
		`{"eventType":"transfer-settled","transferId":"t","messageId":"5","status":"FAILED"}`,
		`{"eventType":"some-future-event","transferId":"t","messageId":"6","originalTransferId":"o"}`,
		`{"eventType":"platform-called","transferId":"t","messageId":"7","op":"settle","status":"FAILED","outcome":"ok","at":"2026-03-01T12:30:00Z"}`,
	}
	var events []*engine.Event
	for i, p := range payloads {
		src := engine.SourceConnect
		if strings.Contains(p, "platform-called") {
			src = engine.SourceApp
		}
		e, err := engine.Parse(src, []byte(p))
		if err != nil {
			t.Fatal(err)
		}
		e.Issuer, e.ReceivedAt = "tenant", at.Add(time.Duration(i)*time.Minute)
		events = append(events, e)
	}
	for mask := range 1 << len(events) {
		var subset []*engine.Event
		for i, e := range events {
			if mask&(1<<i) != 0 {
				subset = append(subset, e)
			}
		}
		tr := engine.Fold("t", subset)
		want, err := json.Marshal(tr.View())
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendView(nil, tr.MarshalCanonical())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("subset %06b:\n got %s\nwant %s", mask, got, want)
		}
	}
}

func TestAppendViewRejectsGarbage(t *testing.T) {
	for _, b := range []string{"", "{", "[]", `"x"`, "null"} {
		if got, err := appendView(nil, []byte(b)); err == nil {
			t.Errorf("appendView(%q) = %s, want an error", b, got)
		}
	}
}

func BenchmarkAppendView(b *testing.B) {
	tr := engine.NewTransfer("t")
	for i := range 4 {
		p := fmt.Sprintf(`{"eventType":"app-data-uploaded","transferId":"t","messageId":"%d","s3Key":"k%d","label":"l",`+
			`"migrationDetails":{"migrationId":"m","migrationScopeId":"s","name":"n","createdAt":1772366400000,"cloudUrl":"https://x"}}`, i, i)
		e, err := engine.Parse(engine.SourceConnect, []byte(p))
		if err != nil {
			b.Fatal(err)
		}
		e.ReceivedAt = time.Now()
		tr.Apply(e)
	}
	stored := tr.MarshalCanonical()
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = appendView(buf[:0], stored); err != nil {
			b.Fatal(err)
		}
	}
}
