package journal_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, tc := range []struct{ name, payload string }{
		{"compact", `{"eventType":"listener-triggered","transferId":"t1"}`},
		{"whitespace", "{\n  \"eventType\" : \"listener-triggered\",\t\"transferId\":\"t1\" }"},
		{"surrounding whitespace", " \r\n{\"eventType\":\"x\",\"transferId\":\"t1\"}\n\n"},
		{"unicode", `{"eventType":"x","transferId":"t1","name":"Zürich 日本語 🚀"}`},
		{"escapes kept", `{"eventType":"x","transferId":"t1","a":"\u00e9\u003c\/\"\\\n"}`},
		{"html characters", `{"eventType":"x","transferId":"t1","q":"<script>&amp;</script>"}`},
		{"nested payload key", `{"payload":{"eventType":"x","transferId":"t1","payload":{"v":1}},"x":",\"payload\":"}`},
		{"numbers kept", `{"eventType":"x","transferId":"t1","n":1.50e+03,"m":-0.0}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &engine.Event{
				ID: `sha256:ab"c<>&`, Source: engine.SourceForge, Kind: engine.KindUnknown, TransferID: "t1",
				Issuer:     "install-<1>&\"2\"",
				ReceivedAt: time.Date(2026, 3, 1, 13, 4, 5, 123456789, time.FixedZone("CET", 3600)),
				Payload:    json.RawMessage(tc.payload),
			}
			data := journal.Encode(e)
			if !json.Valid(data) {
				t.Fatalf("Encode produced invalid JSON: %s", data)
			}
			if !bytes.HasSuffix(data, []byte(`"payload":`+tc.payload+`}`)) {
				t.Errorf("payload not embedded verbatim: %s", data)
			}
			if !bytes.Contains(data, []byte(`"receivedAt":"2026-03-01T12:04:05.123456789Z"`)) {
				t.Errorf("receivedAt not RFC 3339 UTC: %s", data)
			}
			env, err := journal.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			if string(env.Payload) != tc.payload {
				t.Errorf("payload changed:\n got %q\nwant %q", env.Payload, tc.payload)
			}
			if env.V != 1 || env.ID != e.ID || env.Source != e.Source || env.Kind != e.Kind ||
				env.TransferID != e.TransferID || env.Issuer != e.Issuer || !env.ReceivedAt.Equal(e.ReceivedAt) {
				t.Errorf("Decode = %+v, want the fields of %+v", env, e)
			}
		})
	}
}

func TestEncodeFieldOrder(t *testing.T) {
	e := &engine.Event{ID: "m1", Source: engine.SourceConnect, Kind: engine.KindTransferSettled,
		TransferID: "t1", Issuer: "ck", ReceivedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Payload: json.RawMessage(`{"a":1}`)}
	want := `{"v":1,"id":"m1","source":"connect","kind":"transfer-settled","transferId":"t1",` +
		`"issuer":"ck","receivedAt":"2026-01-02T03:04:05Z","payload":{"a":1}}`
	if got := string(journal.Encode(e)); got != want {
		t.Errorf("Encode =\n%s\nwant\n%s", got, want)
	}
}

func TestDecodeOtherLayouts(t *testing.T) {
	data := []byte(`{
	  "payload": {"eventType": "x", "transferId": "t1"},
	  "v": 1, "id": "m1", "source": "forge", "kind": "unknown",
	  "transferId": "t1", "issuer": "i", "receivedAt": "2026-01-02T03:04:05Z"
	}`)
	env, err := journal.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if env.ID != "m1" || string(env.Payload) != `{"eventType": "x", "transferId": "t1"}` {
		t.Errorf("Decode = %+v", env)
	}
}

// TestDecodeHeaderStringsAsEncodingJSON: header strings in the layout
// Encode writes decode as encoding/json decodes them, whatever bytes they
// hold (invalid UTF-8 becomes U+FFFD, a raw control character is
// malformed), so that Decode's result does not depend on the layout.
func TestDecodeHeaderStringsAsEncodingJSON(t *testing.T) {
	for name, id := range map[string]string{
		"plain":             `m1`,
		"escapes":           `m\u00e9\"1`,
		"invalid UTF-8":     "m\xff1",
		"control character": "m\x011",
		"non-ASCII":         "mé1",
	} {
		data := []byte(`{"v":1,"id":"` + id + `","source":"connect","kind":"k","transferId":"t","issuer":"",` +
			`"receivedAt":"2026-01-02T03:04:05Z","payload":{}}`)
		var want journal.Envelope
		wantErr := json.Unmarshal(data, &want)
		got, err := journal.Decode(data)
		switch {
		case wantErr != nil:
			if !errors.Is(err, journal.ErrMalformed) {
				t.Errorf("%s: err = %v, want ErrMalformed (encoding/json: %v)", name, err, wantErr)
			}
		case err != nil:
			t.Errorf("%s: %v", name, err)
		case got.ID != want.ID:
			t.Errorf("%s: id = %q, encoding/json decodes %q", name, got.ID, want.ID)
		}
	}
}

func TestDecodeMalformed(t *testing.T) {
	for name, data := range map[string]string{
		"not json":      `not json`,
		"array":         `[1,2]`,
		"version 2":     `{"v":2,"id":"m","source":"connect","kind":"k","transferId":"t","issuer":"","receivedAt":"2026-01-02T03:04:05Z","payload":{}}`,
		"no id":         `{"v":1,"id":"","source":"connect","kind":"k","transferId":"t","issuer":"","receivedAt":"2026-01-02T03:04:05Z","payload":{}}`,
		"bad source":    `{"v":1,"id":"m","source":"mail","kind":"k","transferId":"t","issuer":"","receivedAt":"2026-01-02T03:04:05Z","payload":{}}`,
		"no transferId": `{"v":1,"id":"m","source":"connect","kind":"k","issuer":"","receivedAt":"2026-01-02T03:04:05Z","payload":{}}`,
		"no payload":    `{"v":1,"id":"m","source":"connect","kind":"k","transferId":"t","issuer":"","receivedAt":"2026-01-02T03:04:05Z"}`,
		"bad time":      `{"v":1,"id":"m","source":"connect","kind":"k","transferId":"t","issuer":"","receivedAt":"yesterday","payload":{}}`,
	} {
		if _, err := journal.Decode([]byte(data)); !errors.Is(err, journal.ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func TestEnvelopeEvent(t *testing.T) {
	want := event(t, "t1", 1) // app-data-uploaded
	env, err := journal.Decode(journal.Encode(want))
	if err != nil {
		t.Fatal(err)
	}
	env.Seq = 42
	got, err := env.Event()
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != want.ID || got.Kind != engine.KindAppDataUploaded || got.Upload == nil ||
		got.Issuer != want.Issuer || !got.ReceivedAt.Equal(want.ReceivedAt) || got.Seq != 42 ||
		!bytes.Equal(got.Payload, want.Payload) {
		t.Errorf("Event() = %+v, want %+v at seq 42", got, want)
	}
}

// TestEnvelopeEventUnparsable: an event stored under older rules that no
// longer parses comes back as an unknown event with its identity, not lost.
func TestEnvelopeEventUnparsable(t *testing.T) {
	env := journal.Envelope{
		V: 1, ID: "m-7", Source: engine.SourceConnect, Kind: engine.KindAppDataUploaded,
		TransferID: "t1", Issuer: "ck", ReceivedAt: time.Unix(1, 0).UTC(), Seq: 7,
		Payload: json.RawMessage(`{"eventType":"app-data-uploaded","transferId":"t1"}`), // no s3Key
	}
	got, err := env.Event()
	if !errors.Is(err, journal.ErrUnparsable) || !engine.IsValidation(err) {
		t.Errorf("err = %v, want ErrUnparsable wrapping the validation error", err)
	}
	if got == nil || got.Kind != engine.KindUnknown || got.ID != "m-7" || got.TransferID != "t1" ||
		got.Seq != 7 || got.Issuer != "ck" || string(got.Payload) != string(env.Payload) {
		t.Errorf("Event() = %+v, want an unknown event carrying the envelope", got)
	}
}

func TestSubjects(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{journal.EventSubject(engine.SourceForge, "t-1", engine.KindTransferSettled), "migrations.events.forge.t-1.transfer-settled"},
		{journal.TransferSubject("t-1", engine.PhaseCancellationRequested), "migrations.transfers.t-1.cancellation_requested"},
		{journal.TransferEventsFilter("t-1"), "migrations.events.*.t-1.*"},
		{journal.KindFilter(engine.KindListenerErrored), "migrations.events.*.*.listener-errored"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// FuzzEnvelope: any valid JSON payload and any header strings survive
// Encode and Decode byte for byte, and Decode never panics.
func FuzzEnvelope(f *testing.F) {
	f.Add("m1", "t1", "ck", `{"a":"<&>"}`)
	f.Add(`a"b`, "t", `\u0000`, " [1, 2] ")
	f.Add("x", "y", "z", `{"x":",\"payload\":1}"}`)
	f.Fuzz(func(t *testing.T, id, transferID, issuer, payload string) {
		_, _ = journal.Decode([]byte(payload))
		if id == "" || transferID == "" || !json.Valid([]byte(payload)) || strings.TrimSpace(payload) == "" {
			return
		}
		e := &engine.Event{ID: id, Source: engine.SourceConnect, Kind: "k", TransferID: transferID,
			Issuer: issuer, Payload: json.RawMessage(payload)}
		env, err := journal.Decode(journal.Encode(e))
		if err != nil {
			t.Fatal(err)
		}
		if string(env.Payload) != payload {
			t.Fatalf("payload %q came back as %q", payload, env.Payload)
		}
		for _, f := range [][2]string{{id, env.ID}, {transferID, env.TransferID}, {issuer, env.Issuer}} {
			if utf8.ValidString(f[0]) && f[0] != f[1] {
				t.Fatalf("header field %q came back as %q", f[0], f[1])
			}
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	data := journal.Encode(event(b, "6f1c2a7e-0d4b-4f4e-9a55-3c1d7b8e2f10", 1))
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := journal.Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	e := event(b, "6f1c2a7e-0d4b-4f4e-9a55-3c1d7b8e2f10", 1)
	b.ReportAllocs()
	for b.Loop() {
		journal.Encode(e)
	}
}

// TestDecodeSourcesAndKinds: every source and kind, and kinds the engine
// does not know or spelt with escapes, decode to the value encoded (Decode
// shares the constants' bytes for the plain spellings).
func TestDecodeSourcesAndKinds(t *testing.T) {
	kinds := append(slices.Clone(engine.Kinds), "listener-triggeredx", "listener", "", `a"b`)
	for _, src := range []engine.Source{engine.SourceConnect, engine.SourceForge, engine.SourceApp} {
		for _, k := range kinds {
			e := &engine.Event{ID: "m", Source: src, Kind: k, TransferID: "t", Issuer: "i", Payload: json.RawMessage(`{}`)}
			env, err := journal.Decode(journal.Encode(e))
			if err != nil || env.Source != src || env.Kind != k {
				t.Fatalf("%s/%q came back as %s/%q, %v", src, k, env.Source, env.Kind, err)
			}
		}
	}
	env, err := journal.Decode([]byte(`{"v":1,"id":"m","source":"conn\u0065ct","kind":"listener-trigger\u0065d","transferId":"t","issuer":"i","receivedAt":"2026-01-02T03:04:05Z","payload":{}}`))
	if err != nil || env.Source != engine.SourceConnect || env.Kind != engine.KindListenerTriggered {
		t.Fatalf("escaped source and kind came back as %s/%q, %v", env.Source, env.Kind, err)
	}
}
