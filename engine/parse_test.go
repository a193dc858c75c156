package engine_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/engine"
)

func readPayload(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "payloads", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestParseSeedPayloads(t *testing.T) {
	tests := []struct {
		file       string
		src        engine.Source
		kind       engine.Kind
		transferID string
		idPrefix   string
		upload     *engine.Upload
		createdAt  time.Time
		clientKeys []string
		err        *engine.TransferError
	}{
		{
			file: "connect-listener-triggered.json", src: engine.SourceConnect,
			kind: engine.KindListenerTriggered, transferID: "e4166374-2345-4c31-918c-83b14eb644f6",
			idPrefix: "sha256:", createdAt: time.Unix(1597211035, 0).UTC(),
			clientKeys: []string{"03a7cb4b-23b6-3a79-8916-8824a053e786"},
		},
		{
			file: "connect-app-data-uploaded.json", src: engine.SourceConnect,
			kind: engine.KindAppDataUploaded, transferID: "16a84eaa-3f88-4758-94d4-ea245a3b202f",
			idPrefix: "sha256:", createdAt: time.Unix(1597193662, 0).UTC(),
			upload:     &engine.Upload{Key: "636abf0f-38a2-45c1-8c68-9c7edde97f3f", Label: "some-optional-label"},
			clientKeys: []string{"acb711b8-a878-356e-abbf-1ae1730308a2"},
		},
		{
			file: "forge-uploaded-app-data.json", src: engine.SourceForge,
			kind: engine.KindAppDataUploaded, transferID: "3f3a47f2-a6a2-4204-84bb-d0fc504c9dc6",
			idPrefix: "53f88ea7-a2d2-4dd2-9f36-2d8c43401b11", createdAt: time.UnixMilli(1723111376499).UTC(),
			upload: &engine.Upload{Key: "e094ca53-3747-4541-b263-0bf7b56a5bca", Label: "file-label-you-used"},
		},
		{
			file: "forge-errored-wrapped.json", src: engine.SourceForge,
			kind: engine.KindListenerErrored, transferID: "3f3a47f2-a6a2-4204-84bb-d0fc504c9dc6",
			idPrefix: "0f8e2d55-9b0e-4a8c-9d0a-5b1b3c6f7a01", createdAt: time.UnixMilli(1723111376499).UTC(),
			err: &engine.TransferError{ExceptionType: "java.lang.IllegalStateException",
				SafeStackTrace: "at com.example.Listener.onStartAppMigration(Listener.java:42)"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			raw := readPayload(t, tc.file)
			e, err := engine.Parse(tc.src, raw)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if e.Kind != tc.kind || e.TransferID != tc.transferID || e.Source != tc.src {
				t.Errorf("got kind %q transfer %q source %q", e.Kind, e.TransferID, e.Source)
			}
			if !strings.HasPrefix(e.ID, tc.idPrefix) {
				t.Errorf("ID = %q, want prefix %q", e.ID, tc.idPrefix)
			}
			if e.Migration == nil || !e.Migration.CreatedAt.Equal(tc.createdAt) {
				t.Errorf("migration = %+v, want createdAt %v", e.Migration, tc.createdAt)
			}
			if (e.Upload == nil) != (tc.upload == nil) || (e.Upload != nil && !reflect.DeepEqual(*e.Upload, *tc.upload)) {
				t.Errorf("upload = %+v, want %+v", e.Upload, tc.upload)
			}
			if (e.Error == nil) != (tc.err == nil) || (e.Error != nil && *e.Error != *tc.err) {
				t.Errorf("error = %+v, want %+v", e.Error, tc.err)
			}
			if strings.Join(e.ClientKeys, ",") != strings.Join(tc.clientKeys, ",") {
				t.Errorf("client keys = %v, want %v", e.ClientKeys, tc.clientKeys)
			}
			if string(e.Payload) != string(raw) {
				t.Error("payload bytes not kept verbatim")
			}
		})
	}
}

func TestParseContentIdentity(t *testing.T) {
	a := `{"eventType":"listener-triggered","transferId":"t1","migrationDetails":{"name":"x","createdAt":1597211035}}`
	b := "{ \"migrationDetails\": {\"createdAt\":1597211035, \"name\":\"x\"},\n \"transferId\":\"t1\", \"eventType\":\"listener-triggered\" }"
	c := `{"eventType":"listener-triggered","transferId":"t1","migrationDetails":{"name":"y","createdAt":1597211035}}`
	ea := mustParse(t, engine.SourceConnect, a)
	eb := mustParse(t, engine.SourceConnect, b)
	ec := mustParse(t, engine.SourceConnect, c)
	if ea.ID != eb.ID {
		t.Errorf("same content, different layout: ids %s and %s differ", ea.ID, eb.ID)
	}
	if ea.ID == ec.ID {
		t.Error("different content, same id")
	}
	bare := `{"eventType":"avi:ecosystem.migration:triggered:listener","transferId":"t1"}`
	wrapped := `{"payload":` + bare + `}`
	if x, y := mustParse(t, engine.SourceForge, bare), mustParse(t, engine.SourceForge, wrapped); x.ID != y.ID {
		t.Errorf("bare and wrapped Forge event: ids %s and %s differ", x.ID, y.ID)
	}
}

func TestParseKinds(t *testing.T) {
	for _, k := range engine.Kinds {
		if k == engine.KindUnknown || k == engine.KindPlatformCalled || k == engine.KindUploadReported || k == engine.KindUploadDiscovered {
			continue
		}
		extra := ""
		if k == engine.KindAppDataUploaded || k == engine.KindEventFileListUploaded {
			extra = `,"s3Key":"k","key":"k"`
		}
		for src, typ := range map[engine.Source]string{
			engine.SourceConnect: engine.ConnectEventType(k),
			engine.SourceForge:   engine.ForgeEventType(k),
		} {
			e := mustParse(t, src, `{"eventType":"`+typ+`","transferId":"t"`+extra+`}`)
			if e.Kind != k {
				t.Errorf("%s %q: kind %q, want %q", src, typ, e.Kind, k)
			}
		}
	}
	e := mustParse(t, engine.SourceConnect, `{"eventType":"brand-new-event","transferId":"t","whatever":[1,2]}`)
	if e.Kind != engine.KindUnknown || e.EventType != "brand-new-event" {
		t.Errorf("new event type: kind %q eventType %q", e.Kind, e.EventType)
	}
}

// TestParseAppSource: platform-called is accepted only from SourceApp (which
// ingest never passes: its routes parse as connect or forge), where it is
// the only kind; from the platform's sources it is an unknown event.
func TestParseAppSource(t *testing.T) {
	body := `{"eventType":"platform-called","transferId":"t","messageId":"m1","op":"settle","status":"FAILED",` +
		`"outcome":"ok","httpStatus":200,"attempts":2,"unanswered":true,"at":"2026-11-23T10:00:00Z"}`
	e := mustParse(t, engine.SourceApp, body)
	if e.Kind != engine.KindPlatformCalled || e.Call == nil || e.Call.Op != "settle" || e.Call.Status != "FAILED" ||
		e.Call.Outcome != engine.OutcomeOK || e.Call.Attempts != 2 || !e.Call.Unanswered || e.Call.HTTPStatus != 200 {
		t.Fatalf("app event: %+v call %+v", e, e.Call)
	}
	for _, src := range []engine.Source{engine.SourceConnect, engine.SourceForge} {
		if e := mustParse(t, src, body); e.Kind != engine.KindUnknown || e.Call != nil {
			t.Errorf("%s sent platform-called: kind %q call %+v, want unknown", src, e.Kind, e.Call)
		}
	}
	for _, bad := range []string{
		`{"eventType":"transfer-settled","transferId":"t"}`,                                                            // the platform's kinds are not the app's
		`{"eventType":"platform-called","transferId":"t","outcome":"ok","at":"2026-11-23T10:00:00Z"}`,                  // no op
		`{"eventType":"platform-called","transferId":"t","op":"settle","outcome":"great","at":"2026-11-23T10:00:00Z"}`, // unknown outcome
		`{"eventType":"platform-called","transferId":"t","op":"settle","outcome":"ok"}`,                                // no time
		`{"eventType":"platform-called","transferId":"t","op":"settle","outcome":"ok","at":"2026-11-23T10:00:00Z","httpStatus":7}`,
		`{"eventType":"platform-called","transferId":"t","op":"settle","outcome":"ok","at":"2026-11-23T10:00:00Z","percent":101}`,
	} {
		if _, err := engine.Parse(engine.SourceApp, []byte(bad)); err == nil {
			t.Errorf("Parse(app, %s) accepted it", bad)
		}
	}
}

func TestParseSettlementStatus(t *testing.T) {
	e := mustParse(t, engine.SourceForge, `{"eventType":"avi:ecosystem.migration:settled:transfer","transferId":"t","status":"SUCCESS"}`)
	if e.SettlementStatus != "SUCCESS" {
		t.Errorf("settlement status %q", e.SettlementStatus)
	}
}

func TestParseInvalid(t *testing.T) {
	long := strings.Repeat("a", engine.MaxIDLength+1)
	tests := []struct {
		name, src, body, field string
	}{
		{"empty body", "connect", ``, ""},
		{"array", "connect", `[1]`, ""},
		{"null", "connect", `null`, ""},
		{"truncated", "connect", `{"eventType":"listener-triggered"`, ""},
		{"trailing garbage", "connect", `{"eventType":"x","transferId":"t"} x`, ""},
		{"missing eventType", "connect", `{"transferId":"t"}`, "eventType"},
		{"empty eventType", "connect", `{"eventType":"","transferId":"t"}`, "eventType"},
		{"numeric eventType", "connect", `{"eventType":7,"transferId":"t"}`, "eventType"},
		{"missing transferId", "connect", `{"eventType":"listener-triggered"}`, "transferId"},
		{"null transferId", "forge", `{"eventType":"x","transferId":null}`, "transferId"},
		{"transferId with dot", "connect", `{"eventType":"x","transferId":"a.b"}`, "transferId"},
		{"transferId with wildcard", "connect", `{"eventType":"x","transferId":"*"}`, "transferId"},
		{"transferId with space", "connect", `{"eventType":"x","transferId":"a b"}`, "transferId"},
		{"transferId with slash", "connect", `{"eventType":"x","transferId":"../x"}`, "transferId"},
		{"transferId too long", "connect", `{"eventType":"x","transferId":"` + long + `"}`, "transferId"},
		{"upload without s3Key", "connect", `{"eventType":"app-data-uploaded","transferId":"t"}`, "s3Key"},
		{"upload with empty s3Key", "connect", `{"eventType":"app-data-uploaded","transferId":"t","s3Key":""}`, "s3Key"},
		{"forge upload without key", "forge", `{"eventType":"avi:ecosystem.migration:uploaded:app_data","transferId":"t"}`, "key"},
		{"wrapped forge upload without key", "forge", `{"payload":{"eventType":"avi:ecosystem.migration:uploaded:app_data","transferId":"t"}}`, "key"},
		{"empty messageId", "forge", `{"eventType":"x","transferId":"t","messageId":""}`, "messageId"},
		{"numeric messageId", "forge", `{"eventType":"x","transferId":"t","messageId":12}`, "messageId"},
		{"bad originalTransferId", "connect", `{"eventType":"x","transferId":"t","originalTransferId":"a.b"}`, "originalTransferId"},
		{"self re-run", "connect", `{"eventType":"x","transferId":"t","originalTransferId":"t"}`, "originalTransferId"},
		{"details not an object", "connect", `{"eventType":"x","transferId":"t","migrationDetails":"x"}`, "migrationDetails"},
		{"bad createdAt", "connect", `{"eventType":"x","transferId":"t","migrationDetails":{"createdAt":"soon"}}`, "migrationDetails.createdAt"},
		{"createdAt in the year 9999", "connect", `{"eventType":"x","transferId":"t","migrationDetails":{"createdAt":"9999-12-31T23:59:59Z"}}`, "migrationDetails.createdAt"},
		{"createdAt 3e14 ms", "forge", `{"eventType":"x","transferId":"t","migrationDetails":{"createdAt":3e14}}`, "migrationDetails.createdAt"},
		{"createdAt 1e15 ms", "forge", `{"eventType":"x","transferId":"t","migrationDetails":{"createdAt":"1000000000000000"}}`, "migrationDetails.createdAt"},
		{"createdAt in 2100", "connect", `{"eventType":"x","transferId":"t","migrationDetails":{"createdAt":"2100-01-01T00:00:00Z"}}`, "migrationDetails.createdAt"},
		{"createdAt before 2015", "connect", `{"eventType":"x","transferId":"t","migrationDetails":{"createdAt":1}}`, "migrationDetails.createdAt"},
		{"createdAt year 1", "connect", `{"eventType":"x","transferId":"t","migrationDetails":{"createdAt":"0001-01-01T00:00:01Z"}}`, "migrationDetails.createdAt"},
		{"messageId too long", "forge", `{"eventType":"x","transferId":"t","messageId":"` + strings.Repeat("m", engine.MaxMessageIDLength+1) + `"}`, "messageId"},
		{"100 KB messageId", "connect", `{"eventType":"x","transferId":"t","messageId":"` + strings.Repeat("m", 100<<10) + `"}`, "messageId"},
		{"messageId with CR LF", "connect", `{"eventType":"x","transferId":"t","messageId":"a\r\nNats-Expected-Stream: X"}`, "messageId"},
		{"messageId with space", "connect", `{"eventType":"x","transferId":"t","messageId":"a b"}`, "messageId"},
		{"client key too long", "connect", `{"eventType":"x","transferId":"t","migrationDetails":{"jiraClientKey":"` + strings.Repeat("k", engine.MaxKeyLength+1) + `"}}`, "migrationDetails.jiraClientKey"},
		{"client key with newline", "connect", `{"eventType":"x","transferId":"t","migrationDetails":{"confluenceClientKey":"a\nb"}}`, "migrationDetails.confluenceClientKey"},
		{"migrationId too long", "connect", `{"eventType":"x","transferId":"t","migrationDetails":{"migrationId":"` + strings.Repeat("m", engine.MaxKeyLength+1) + `"}}`, "migrationDetails.migrationId"},
		{"numeric cloudUrl", "connect", `{"eventType":"x","transferId":"t","migrationDetails":{"cloudUrl":1}}`, "migrationDetails.cloudUrl"},
		{"transferError not an object", "forge", `{"eventType":"avi:ecosystem.migration:errored:listener","transferId":"t","transferError":[]}`, "transferError"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := engine.Parse(engine.Source(tc.src), []byte(tc.body))
			var ve *engine.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse = %+v, %v; want a *ValidationError", e, err)
			}
			if ve.Field != tc.field {
				t.Errorf("field %q (%v), want %q", ve.Field, err, tc.field)
			}
			if ve.Reason == "" {
				t.Error("empty reason")
			}
		})
	}
}

// TestParseCreatedAtRange: the ends of the accepted range of createdAt.
func TestParseCreatedAtRange(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want time.Time
	}{
		{`"2015-01-01T00:00:00Z"`, engine.MinCreatedAt},
		{`"2099-12-31T23:59:59Z"`, time.Date(2099, 12, 31, 23, 59, 59, 0, time.UTC)},
		{`0`, time.Time{}},
		{`4102444799999`, time.UnixMilli(4102444799999).UTC()},
	} {
		e := mustParse(t, engine.SourceConnect, `{"eventType":"x","transferId":"t","migrationDetails":{"name":"n","createdAt":`+tc.raw+`}}`)
		if !e.Migration.CreatedAt.Equal(tc.want) {
			t.Errorf("createdAt %s = %v, want %v", tc.raw, e.Migration.CreatedAt, tc.want)
		}
		// The deadline derived from any accepted createdAt encodes.
		tr := engine.Fold("t", []*engine.Event{e})
		if _, err := json.Marshal(tr.View()); err != nil {
			t.Errorf("createdAt %s: view does not encode: %v", tc.raw, err)
		}
	}
}

// TestEventIdentityScope: the fold identity and the de-duplication key of
// an event. A messageId sent with two bodies is two events; the key is
// scoped by source, issuer and transfer.
func TestEventIdentityScope(t *testing.T) {
	a := mustParse(t, engine.SourceConnect, `{"eventType":"app-data-uploaded","transferId":"t","messageId":"m1","s3Key":"k1"}`)
	again := mustParse(t, engine.SourceConnect, `{ "s3Key":"k1", "messageId":"m1", "transferId":"t", "eventType":"app-data-uploaded" }`)
	changed := mustParse(t, engine.SourceConnect, `{"eventType":"app-data-uploaded","transferId":"t","messageId":"m1","s3Key":"k2"}`)
	if a.ID != "m1" || changed.ID != "m1" {
		t.Fatalf("ids %q, %q: the envelope id stays the messageId", a.ID, changed.ID)
	}
	if a.Key() != again.Key() {
		t.Errorf("an exact re-delivery has key %q, not %q", again.Key(), a.Key())
	}
	if a.Key() == changed.Key() {
		t.Errorf("a changed body with the same messageId has the same key %q", a.Key())
	}
	tr := engine.Fold("t", []*engine.Event{a, again, changed})
	if tr.Version != 2 || len(tr.Uploads) != 2 {
		t.Errorf("fold of an event, its re-delivery and a changed body: version %d, uploads %v; want 2 and both keys", tr.Version, tr.Uploads)
	}
	rev := engine.Fold("t", []*engine.Event{changed, again, a})
	if !bytes.Equal(tr.MarshalCanonical(), rev.MarshalCanonical()) {
		t.Error("fold depends on order")
	}
	content := mustParse(t, engine.SourceConnect, `{"eventType":"listener-triggered","transferId":"t"}`)
	if content.Key() != content.ID {
		t.Errorf("content identity %q has key %q", content.ID, content.Key())
	}

	a.Issuer = "tenant-a"
	other := *a
	other.Issuer = "tenant-b"
	forge := *a
	forge.Source = engine.SourceForge
	otherTransfer := mustParse(t, engine.SourceConnect, `{"eventType":"app-data-uploaded","transferId":"t2","messageId":"m1","s3Key":"k1"}`)
	otherTransfer.Issuer = "tenant-a"
	keys := map[string]bool{}
	for _, e := range []*engine.Event{a, &other, &forge, otherTransfer} {
		keys[e.DedupeKey()] = true
	}
	if len(keys) != 4 {
		t.Errorf("dedupe keys %v: another issuer, source or transfer must not share a key", keys)
	}
}

func TestParseKeepsUnknownFields(t *testing.T) {
	body := `{"eventType":"listener-triggered","transferId":"t","brandNew":{"a":[1,2,3]}}`
	e := mustParse(t, engine.SourceConnect, body)
	if string(e.Payload) != body {
		t.Errorf("payload %s, want %s", e.Payload, body)
	}
}

func mustParse(tb testing.TB, src engine.Source, body string) *engine.Event {
	tb.Helper()
	e, err := engine.Parse(src, []byte(body))
	if err != nil {
		tb.Fatalf("Parse(%s, %s): %v", src, body, err)
	}
	return e
}
