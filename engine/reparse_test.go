package engine_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/transferd/transferd/engine"
)

// reparseCorpus is every payload in testdata (the seed payloads and the
// fuzz corpora) and payloads of the shapes transferd stores: both
// platform spellings, re-runs, escapes, duplicates, app events, and
// bodies that no longer parse.
func reparseCorpus(tb testing.TB) [][]byte {
	tb.Helper()
	var corpus [][]byte
	files, _ := filepath.Glob(filepath.Join("testdata", "payloads", "*.json"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			tb.Fatal(err)
		}
		corpus = append(corpus, b)
	}
	for _, s := range []string{
		`{"eventType":"listener-triggered","transferId":"t-1","messageId":"m-1","migrationDetails":{"migrationId":"mi","migrationScopeId":"sc","name":"n","createdAt":1597211035,"cloudUrl":"https://x.atlassian.net","jiraClientKey":"ck","confluenceClientKey":"unknown"}}`,
		`{"eventType":"app-data-uploaded","transferId":"t-1","messageId":"m-2","s3Key":"k","label":"l"}`,
		`{"eventType":"avi:ecosystem.migration:uploaded:app_data","transferId":"t-1","key":"k","label":"l"}`,
		`{"payload":{"eventType":"avi:ecosystem.migration:settled:transfer","transferId":"t","status":"SUCCESS"}}`,
		`{"eventType":"transfer-cancellation-requested","transferId":"t","originalTransferId":"o"}`,
		`{"eventType":"listener-errored","transferId":"t","transferError":{"exceptionType":"E","safeStackTrace":"at x"}}`,
		`{"eventType":"list\u0065ner-triggered","transferId":"t\u002d1","messageId":"m\u002d1"}`,
		`{"eventType":"x","transferId":"t","transferId":"u","messageId":"m","messageId":"n"}`,
		`{"eventType":"upload-reported","transferId":"t","messageId":"r","key":"k","status":"done","attempt":1,"at":"2026-11-23T10:00:00Z"}`,
		`{"eventType":"platform-called","transferId":"t","messageId":"c","op":"progress","outcome":"ok","at":"2026-11-23T10:00:00Z"}`,
		`{"eventType":"upload-discovered","transferId":"t","messageId":"d","key":"k"}`,
		`{"eventType":"x","transferId":"t b"}`, `{"eventType":"x"}`, `{"eventType":1,"transferId":"t"}`, `[]`, `{`, ``,
		` { "eventType" : "x" , "transferId" : "t" , "migrationDetails" : { "b" : [ 1 , { "z" : null , "y" : true } ] } } `,
	} {
		corpus = append(corpus, []byte(s))
	}
	fuzz, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "*", "*"))
	for _, name := range fuzz {
		b, err := os.ReadFile(name)
		if err != nil {
			tb.Fatal(err)
		}
		corpus = append(corpus, b)
	}
	return corpus
}

// checkReparse holds ReparseKnown to what Reparse has always been: Parse
// with the given identity instead of the computed one, field for field,
// the same error when Parse fails, whatever transferId is passed as
// known.
func checkReparse(t *testing.T, src engine.Source, body []byte, id, transferID string) {
	t.Helper()
	want, wantErr := engine.Parse(src, body)
	if wantErr == nil {
		want.ID = id
	}
	got, err := engine.ReparseKnown(src, body, id, transferID)
	if id == "" {
		if err == nil {
			t.Fatalf("ReparseKnown of %q without id succeeded", body)
		}
		return
	}
	switch {
	case (err == nil) != (wantErr == nil):
		t.Fatalf("ReparseKnown(%s, %q) error %v, Parse %v", src, body, err, wantErr)
	case err != nil && err.Error() != wantErr.Error():
		t.Fatalf("ReparseKnown(%s, %q) error %q, Parse %q", src, body, err, wantErr)
	case err == nil && !reflect.DeepEqual(got, want):
		t.Fatalf("ReparseKnown(%s, %q, %q, %q):\n got %+v\nwant %+v", src, body, id, transferID, got, want)
	}
	if old, err := engine.Reparse(src, body, id); (err == nil) != (got != nil) || err == nil && !reflect.DeepEqual(old, got) {
		t.Fatalf("Reparse and ReparseKnown differ on %q: %v", body, err)
	}
	checkReparseKeyed(t, src, body, id, transferID, got, err)
}

// checkReparseKeyed holds ReparseKeyed to ReparseKnown's result known
// (with error knownErr): given the key known had, the same event with the
// same key and no digest; given a key of another form, known itself.
func checkReparseKeyed(t *testing.T, src engine.Source, body []byte, id, transferID string, known *engine.Event, knownErr error) {
	t.Helper()
	if known == nil {
		if _, err := engine.ReparseKeyed(src, body, id, transferID, id); (err == nil) != (knownErr == nil) {
			t.Fatalf("ReparseKeyed(%q) error %v, ReparseKnown %v", body, err, knownErr)
		}
		return
	}
	keyed, err := engine.ReparseKeyed(src, body, id, transferID, known.Key())
	if err != nil {
		t.Fatalf("ReparseKeyed(%q, key %q): %v", body, known.Key(), err)
	}
	if keyed.Key() != known.Key() || keyed.Digest != "" {
		t.Fatalf("ReparseKeyed(%q): key %q digest %q, want key %q and no digest", body, keyed.Key(), keyed.Digest, known.Key())
	}
	if d := differentFields(keyed, known, "Digest"); d != "" {
		t.Fatalf("ReparseKeyed(%q) differs from ReparseKnown in %s", body, d)
	}
	for _, other := range []string{"", "x", id + "#" + strings.Repeat("A", 32), id + "#" + strings.Repeat("0", 31), "sha256:" + strings.Repeat("0", 64)} {
		if other == known.Key() {
			continue
		}
		e, err := engine.ReparseKeyed(src, body, id, transferID, other)
		if err != nil || !reflect.DeepEqual(e, known) {
			t.Fatalf("ReparseKeyed(%q, key %q) = %+v, %v; want ReparseKnown's %+v", body, other, e, err, known)
		}
	}
}

// differentFields names the first exported field of a and b, other than
// skip, whose values differ, or returns "".
func differentFields(a, b *engine.Event, skip string) string {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	for i := range va.NumField() {
		f := va.Type().Field(i)
		if !f.IsExported() || f.Name == skip {
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			return f.Name
		}
	}
	return ""
}

// TestReparseAgreesWithParse checks the read-back path against Parse on
// the corpus, with the envelope's identity being the event's own, another
// one, or its transferId passed or not.
func TestReparseAgreesWithParse(t *testing.T) {
	for _, body := range reparseCorpus(t) {
		for _, src := range []engine.Source{engine.SourceConnect, engine.SourceForge, engine.SourceApp} {
			ids := []string{"other-id"}
			tids := []string{"", "t", "other-transfer"}
			if e, err := engine.Parse(src, body); err == nil {
				ids = append(ids, e.ID, e.MessageID, "sha256:"+e.Digest)
				tids = append(tids, e.TransferID)
			}
			for _, id := range ids {
				for _, tid := range tids {
					checkReparse(t, src, body, id, tid)
				}
			}
		}
	}
}

// FuzzReparse is TestReparseAgreesWithParse on fuzzed payloads and
// identities.
func FuzzReparse(f *testing.F) {
	for _, body := range reparseCorpus(f) {
		f.Add(uint8(0), body, "m-1", "t-1")
		f.Add(uint8(1), body, "t", "t")
	}
	f.Fuzz(func(t *testing.T, s uint8, body []byte, id, transferID string) {
		src := []engine.Source{engine.SourceConnect, engine.SourceForge, engine.SourceApp}[s%3]
		checkReparse(t, src, body, id, transferID)
		if e, err := engine.Parse(src, body); err == nil {
			checkReparse(t, src, body, e.ID, e.TransferID)
			checkReparse(t, src, body, e.ID, transferID)
		}
	})
}

// BenchmarkReparse reads back an event of the shape the platform sends
// (and BenchmarkCatchUp stores) as the journal does.
func BenchmarkReparse(b *testing.B) {
	raw := []byte(`{"eventType":"app-data-uploaded","transferId":"0f8b6c52-7a43-4e0e-9a51-3c2d1e0f9a77","messageId":"5b1d0c3e-2f4a-4b6c-8d9e-0a1b2c3d4e5f","migrationDetails":{"migrationId":"a0b8ed5a-a335-4e0d-b20f-17d821b40c2d","migrationScopeId":"47d54f22-0b9d-4cda-a527-c65ef65f2564","name":"Migration of my jira project","createdAt":1597193662,"cloudUrl":"https://cloud-site-under-migration.atlassian.net","jiraClientKey":"acb711b8-a878-356e-abbf-1ae1730308a2","confluenceClientKey":"unknown"},"s3Key":"636abf0f-38a2-45c1-8c68-9c7edde97f3f","label":"attachments-1"}`)
	id, tid := "5b1d0c3e-2f4a-4b6c-8d9e-0a1b2c3d4e5f", "0f8b6c52-7a43-4e0e-9a51-3c2d1e0f9a77"
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := engine.ReparseKnown(engine.SourceConnect, raw, id, tid); err != nil {
			b.Fatal(err)
		}
	}
}

// TestKeyInDedupeKey: the key comes back out of an event's DedupeKey, also
// when the issuer holds colons (a Forge app ARI), and only for the event's
// own source, issuer and transferId.
func TestKeyInDedupeKey(t *testing.T) {
	e := &engine.Event{ID: "m-1", Digest: strings.Repeat("ab", 32), Source: engine.SourceForge,
		Issuer: "ari:cloud:ecosystem::installation/1", TransferID: "t-1"}
	if got := engine.KeyInDedupeKey(e.DedupeKey(), e.Source, e.Issuer, e.TransferID); got != e.Key() {
		t.Errorf("key %q, want %q", got, e.Key())
	}
	for _, c := range []struct {
		src            engine.Source
		issuer, tid, m string
	}{
		{engine.SourceConnect, e.Issuer, e.TransferID, e.DedupeKey()},
		{e.Source, "ari:cloud:ecosystem::installation/2", e.TransferID, e.DedupeKey()},
		{e.Source, e.Issuer, "t-2", e.DedupeKey()},
		{e.Source, e.Issuer, e.TransferID, e.ID},
		{e.Source, e.Issuer, e.TransferID, "forge:" + e.Issuer + e.TransferID + ":" + e.Key()},
	} {
		if got := engine.KeyInDedupeKey(c.m, c.src, c.issuer, c.tid); got != "" {
			t.Errorf("KeyInDedupeKey(%q, %s, %s, %s) = %q, want none", c.m, c.src, c.issuer, c.tid, got)
		}
	}
}
