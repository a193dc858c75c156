package engine

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
)

// MaxIDLength is the longest transferId (and originalTransferId) accepted.
const MaxIDLength = 128

// wire is the subset of a payload the engine reads. Fields are kept raw so
// a wrong type is reported against its field instead of failing the decode.
type wire struct {
	EventType          json.RawMessage `json:"eventType"`
	TransferID         json.RawMessage `json:"transferId"`
	MessageID          json.RawMessage `json:"messageId"`
	OriginalTransferID json.RawMessage `json:"originalTransferId"`
	MigrationDetails   json.RawMessage `json:"migrationDetails"`
	S3Key              json.RawMessage `json:"s3Key"`
	Key                json.RawMessage `json:"key"`
	Label              json.RawMessage `json:"label"`
	TransferError      json.RawMessage `json:"transferError"`
	Status             json.RawMessage `json:"status"`
	TransferStatus     json.RawMessage `json:"transferStatus"`
	SettlementStatus   json.RawMessage `json:"settlementStatus"`
}

type wireDetails struct {
	MigrationID         json.RawMessage `json:"migrationId"`
	MigrationScopeID    json.RawMessage `json:"migrationScopeId"`
	Name                json.RawMessage `json:"name"`
	CreatedAt           json.RawMessage `json:"createdAt"`
	CloudURL            json.RawMessage `json:"cloudUrl"`
	JiraClientKey       json.RawMessage `json:"jiraClientKey"`
	ConfluenceClientKey json.RawMessage `json:"confluenceClientKey"`
}

type wireError struct {
	ExceptionType  json.RawMessage `json:"exceptionType"`
	SafeStackTrace json.RawMessage `json:"safeStackTrace"`
}

// Parse validates a payload received from src and returns its canonical
// event. Forge payloads may be bare or wrapped as {"payload": {…}}; both
// spellings of eventType are understood from either source, and an unknown
// eventType yields KindUnknown. Unknown fields are ignored, never rejected.
// The returned event keeps payload verbatim; Issuer, ReceivedAt and Seq are
// left for the caller. Every error is a *ValidationError.
func Parse(src Source, payload []byte) (*Event, error) {
	if !src.Valid() {
		return nil, invalid("source", "must be connect or forge")
	}
	body := bytes.TrimSpace(payload)
	if len(body) == 0 || body[0] != '{' {
		return nil, invalid("", "body must be a JSON object")
	}
	var w wire
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, invalid("", "body is not valid JSON: "+jsonReason(err))
	}
	inner := body
	if src == SourceForge && w.EventType == nil {
		var wrapped struct {
			Payload json.RawMessage `json:"payload"`
		}
		// body already decoded once, so this cannot fail on syntax.
		_ = json.Unmarshal(body, &wrapped)
		if p := bytes.TrimSpace(wrapped.Payload); len(p) > 0 && p[0] == '{' {
			w = wire{}
			if err := json.Unmarshal(p, &w); err != nil {
				return nil, invalid("payload", "not valid JSON: "+jsonReason(err))
			}
			inner = p
		}
	}

	e := &Event{Source: src, Payload: payload}
	var err error
	if e.EventType, err = requireString(w.EventType, "eventType"); err != nil {
		return nil, err
	}
	if e.TransferID, err = requireString(w.TransferID, "transferId"); err != nil {
		return nil, err
	}
	if err := checkID("transferId", e.TransferID); err != nil {
		return nil, err
	}
	e.Kind = kindOf(e.EventType)

	if w.MessageID != nil && !isNull(w.MessageID) {
		if e.MessageID, err = requireString(w.MessageID, "messageId"); err != nil {
			return nil, err
		}
	}
	if e.OriginalTransferID, err = optionalString(w.OriginalTransferID, "originalTransferId"); err != nil {
		return nil, err
	}
	if e.OriginalTransferID != "" {
		if err := checkID("originalTransferId", e.OriginalTransferID); err != nil {
			return nil, err
		}
		if e.OriginalTransferID == e.TransferID {
			return nil, invalid("originalTransferId", "must differ from transferId")
		}
	}
	if err := parseDetails(e, w.MigrationDetails); err != nil {
		return nil, err
	}
	if err := parseKindFacts(e, &w); err != nil {
		return nil, err
	}

	if e.MessageID != "" {
		e.ID = e.MessageID
	} else if e.ID, err = contentID(inner); err != nil {
		return nil, err
	}
	return e, nil
}

func kindOf(eventType string) Kind {
	if k, ok := connectKinds[eventType]; ok {
		return k
	}
	if k, ok := forgeKinds[eventType]; ok {
		return k
	}
	return KindUnknown
}

func parseKindFacts(e *Event, w *wire) error {
	switch e.Kind {
	case KindAppDataUploaded, KindEventFileListUploaded:
		s3Key, err := optionalString(w.S3Key, "s3Key")
		if err != nil {
			return err
		}
		key, err := optionalString(w.Key, "key")
		if err != nil {
			return err
		}
		// The source's own spelling wins when a payload carries both.
		if e.Source == SourceConnect && s3Key != "" || key == "" {
			key = s3Key
		}
		if key == "" {
			if e.Source == SourceConnect {
				return invalid("s3Key", "required on "+e.EventType+" events")
			}
			return invalid("key", "required on "+e.EventType+" events")
		}
		label, err := optionalString(w.Label, "label")
		if err != nil {
			return err
		}
		e.Upload = &Upload{Key: key, Label: label}
		if e.Kind == KindEventFileListUploaded {
			e.Upload.Kind = "event-file-list"
		}
	case KindListenerErrored:
		if w.TransferError == nil || isNull(w.TransferError) {
			return nil
		}
		var we wireError
		if err := decodeObject(w.TransferError, &we, "transferError"); err != nil {
			return err
		}
		var te TransferError
		var err error
		if te.ExceptionType, err = optionalString(we.ExceptionType, "transferError.exceptionType"); err != nil {
			return err
		}
		if te.SafeStackTrace, err = optionalString(we.SafeStackTrace, "transferError.safeStackTrace"); err != nil {
			return err
		}
		if te != (TransferError{}) {
			e.Error = &te
		}
	case KindTransferSettled:
		for _, f := range []struct {
			raw  json.RawMessage
			name string
		}{{w.Status, "status"}, {w.TransferStatus, "transferStatus"}, {w.SettlementStatus, "settlementStatus"}} {
			s, err := optionalString(f.raw, f.name)
			if err != nil {
				return err
			}
			if s != "" {
				e.SettlementStatus = s
				break
			}
		}
	}
	return nil
}

func parseDetails(e *Event, raw json.RawMessage) error {
	if raw == nil || isNull(raw) {
		return nil
	}
	var wd wireDetails
	if err := decodeObject(raw, &wd, "migrationDetails"); err != nil {
		return err
	}
	var m Migration
	var err error
	for _, f := range []struct {
		raw  json.RawMessage
		name string
		dst  *string
	}{
		{wd.MigrationID, "migrationId", &m.MigrationID},
		{wd.MigrationScopeID, "migrationScopeId", &m.MigrationScopeID},
		{wd.Name, "name", &m.Name},
		{wd.CloudURL, "cloudUrl", &m.CloudURL},
	} {
		if *f.dst, err = optionalString(f.raw, "migrationDetails."+f.name); err != nil {
			return err
		}
	}
	if m.CreatedAt, err = parseCreatedAt(wd.CreatedAt); err != nil {
		return err
	}
	for i, raw := range []json.RawMessage{wd.JiraClientKey, wd.ConfluenceClientKey} {
		ck, err := optionalString(raw, "migrationDetails."+connectClientKeys[i])
		if err != nil {
			return err
		}
		if ck != "" && ck != "unknown" {
			e.ClientKeys = append(e.ClientKeys, ck)
		}
	}
	if m != (Migration{}) {
		e.Migration = &m
	}
	return nil
}

// parseCreatedAt reads migrationDetails.createdAt: epoch seconds (Connect
// examples) or milliseconds (Forge example) as a number or numeric string,
// or an RFC 3339 string. Values of 1e11 and above are taken as milliseconds
// (1e11 seconds is the year 5138).
func parseCreatedAt(raw json.RawMessage) (time.Time, error) {
	const field = "migrationDetails.createdAt"
	if raw == nil || isNull(raw) {
		return time.Time{}, nil
	}
	text := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &text); err != nil {
			return time.Time{}, invalid(field, "must be a number or a string")
		}
		if text == "" {
			return time.Time{}, nil
		}
		if t, err := time.Parse(time.RFC3339Nano, text); err == nil {
			return t.UTC(), nil
		}
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || f < 0 || f > 1e15 {
		return time.Time{}, invalid(field, "must be epoch seconds, epoch milliseconds or an RFC 3339 time")
	}
	if f >= 1e11 {
		return time.UnixMilli(int64(f)).UTC(), nil
	}
	return time.Unix(int64(f), 0).UTC(), nil
}

// contentID is the identity of an event without messageId: "sha256:" and
// the hex digest of the payload's canonical JSON (keys sorted, insignificant
// space removed), so an exact re-delivery still de-duplicates.
func contentID(payload []byte) (string, error) {
	var v any
	d := json.NewDecoder(bytes.NewReader(payload))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return "", invalid("", "body is not valid JSON: "+jsonReason(err))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", invalid("", "body cannot be canonicalised: "+err.Error())
	}
	sum := sha256.Sum256(bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}))
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// ValidID reports whether s can be a transferId: 1 to MaxIDLength characters
// from [A-Za-z0-9] and "-_:=+@~", so that it is always a single NATS subject
// token and a URL path segment.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-_:=+@~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func checkID(field, s string) error {
	if len(s) > MaxIDLength {
		return invalid(field, "longer than "+strconv.Itoa(MaxIDLength)+" characters")
	}
	if !ValidID(s) {
		return invalid(field, "may contain only letters, digits and -_:=+@~")
	}
	return nil
}

func requireString(raw json.RawMessage, field string) (string, error) {
	if raw == nil || isNull(raw) {
		return "", invalid(field, "required, a non-empty string")
	}
	s, err := optionalString(raw, field)
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", invalid(field, "must be a non-empty string")
	}
	return s, nil
}

func optionalString(raw json.RawMessage, field string) (string, error) {
	if raw == nil || isNull(raw) {
		return "", nil
	}
	if raw[0] != '"' {
		return "", invalid(field, "must be a string")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", invalid(field, "must be a string")
	}
	return s, nil
}

func decodeObject(raw json.RawMessage, v any, field string) error {
	if raw[0] != '{' {
		return invalid(field, "must be an object")
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return invalid(field, "must be an object")
	}
	return nil
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

// jsonReason shortens encoding/json's messages to what a sender can act on.
func jsonReason(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return se.Error() + " at byte " + strconv.FormatInt(se.Offset, 10)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}
