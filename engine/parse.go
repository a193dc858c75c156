package engine

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// MaxIDLength is the longest transferId (and originalTransferId) accepted.
const MaxIDLength = 128

// Caps on the other identity-bearing strings of a payload (bytes).
const (
	// MaxMessageIDLength caps messageId (the platform's is a 36-character
	// UUID). A messageId is also printable ASCII without spaces: it becomes
	// part of the Nats-Msg-Id header.
	MaxMessageIDLength = 128
	// MaxKeyLength caps the migrationDetails client keys, migrationId and
	// migrationScopeId, and the issuers ingest accepts (see ValidIssuer).
	MaxKeyLength = 256
)

// The accepted range of migrationDetails.createdAt: from MinCreatedAt
// (before the app migration platform existed) to before MaxCreatedAt, so
// that the 14-day deadline derived from it is always a JSON-encodable time.
// The range is absolute, so Parse stays a pure function; ingest adds a check
// against its clock.
var (
	MinCreatedAt = time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC)
	MaxCreatedAt = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
)

// wire is the subset of a payload the engine reads, as raw JSON values, so
// a wrong type is reported against its field.
type wire struct {
	EventType, TransferID, MessageID, OriginalTransferID []byte
	MigrationDetails, S3Key, Key, Label, TransferError   []byte
	Status, TransferStatus, SettlementStatus             []byte
	Payload                                              []byte // the Forge wrapper's member
}

func (w *wire) read(obj []byte) {
	eachMember(obj, func(key, val []byte) {
		name := string(key[1 : len(key)-1])
		if bytes.IndexByte(key, '\\') >= 0 {
			name = unquote(key)
		}
		switch name {
		case "eventType":
			w.EventType = val
		case "transferId":
			w.TransferID = val
		case "messageId":
			w.MessageID = val
		case "originalTransferId":
			w.OriginalTransferID = val
		case "migrationDetails":
			w.MigrationDetails = val
		case "s3Key":
			w.S3Key = val
		case "key":
			w.Key = val
		case "label":
			w.Label = val
		case "transferError":
			w.TransferError = val
		case "status":
			w.Status = val
		case "transferStatus":
			w.TransferStatus = val
		case "settlementStatus":
			w.SettlementStatus = val
		case "payload":
			w.Payload = val
		}
	})
}

// Parse validates a payload received from src and returns its canonical
// event. Forge payloads may be bare or wrapped as {"payload": {…}}; both
// spellings of eventType are understood from either source, and an unknown
// eventType yields KindUnknown. Unknown fields are ignored, never rejected.
// The returned event keeps payload verbatim; Issuer, ReceivedAt and Seq are
// left for the caller. Every error is a *ValidationError.
func Parse(src Source, payload []byte) (*Event, error) { return parse(src, payload, "", "", "") }

// Reparse rebuilds an event read back from the journal: as Parse, but with
// the identity fixed when it was appended instead of computed again.
func Reparse(src Source, payload []byte, id string) (*Event, error) {
	return ReparseKnown(src, payload, id, "")
}

// ReparseKnown is Reparse given also the transferId the event was
// appended under, as its envelope records it. The result is Reparse's,
// field for field; strings equal to id or transferID (the messageId, the
// transferId) share their bytes rather than being copied again.
func ReparseKnown(src Source, payload []byte, id, transferID string) (*Event, error) {
	if id == "" {
		return nil, invalid("id", "required")
	}
	return parse(src, payload, id, transferID, "")
}

// ReparseKeyed is ReparseKnown given also the event's key (Event.Key) as
// it was when the event was appended (its Nats-Msg-Id holds it): a key of
// the form Key gives id (id itself for a content id, else id, "#" and 32
// lowercase hex digits) is taken as the event's key, and the payload's
// digest, which only the key needs, is not computed again; Digest is then
// empty. Any other key is ignored. Everything else is ReparseKnown's.
func ReparseKeyed(src Source, payload []byte, id, transferID, key string) (*Event, error) {
	if id == "" {
		return nil, invalid("id", "required")
	}
	if !keyFits(id, key) {
		key = ""
	}
	return parse(src, payload, id, transferID, key)
}

// keyFits reports whether key has the form Event.Key gives an event whose
// ID is id.
func keyFits(id, key string) bool {
	if key == id {
		return len(id) == len(contentIDPrefix)+64 && strings.HasPrefix(id, contentIDPrefix) && isLowerHex(id[len(contentIDPrefix):])
	}
	digest, ok := strings.CutPrefix(key, id+"#")
	return ok && len(digest) == 32 && isLowerHex(digest)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// parse is Parse (id empty), ReparseKnown and ReparseKeyed; known is a
// transferId whose string to share, key the event's key when known.
func parse(src Source, payload []byte, id, known, key string) (*Event, error) {
	if !src.Valid() {
		return nil, invalid("source", "must be connect, forge or app")
	}
	body := bytes.TrimSpace(payload)
	if len(body) == 0 || body[0] != '{' {
		return nil, invalid("", "body must be a JSON object")
	}
	if !validJSON(body) {
		var v struct{}
		return nil, invalid("", "body is not valid JSON: "+jsonReason(json.Unmarshal(body, &v)))
	}
	var w wire
	w.read(body)
	inner := body
	if src == SourceForge && w.EventType == nil && len(w.Payload) > 0 && w.Payload[0] == '{' {
		inner = w.Payload
		w = wire{}
		w.read(inner)
	}

	e := &Event{Source: src, Payload: payload}
	var err error
	if e.EventType, err = requireString(w.EventType, "eventType"); err != nil {
		return nil, err
	}
	if e.TransferID, err = requireKnown(w.TransferID, "transferId", known); err != nil {
		return nil, err
	}
	if err := checkID("transferId", e.TransferID); err != nil {
		return nil, err
	}
	e.Kind = kindOf(e.EventType)
	if src == SourceApp {
		// transferd's own events: only its own kinds, never the platform's.
		if e.Kind = appKinds[e.EventType]; e.Kind == "" {
			return nil, invalid("eventType", "an app event must be one of transferd's own kinds")
		}
	}

	if w.MessageID != nil && !isNull(w.MessageID) {
		if e.MessageID, err = requireKnown(w.MessageID, "messageId", id); err != nil {
			return nil, err
		}
		if err := checkToken("messageId", e.MessageID, MaxMessageIDLength); err != nil {
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

	if key != "" {
		e.key = key
	} else {
		e.Digest = digest(inner)
	}
	switch {
	case id != "":
		e.ID = id
	case e.MessageID != "":
		e.ID = e.MessageID
	default:
		e.ID = contentIDPrefix + e.Digest
	}
	return e, nil
}

// appKinds are the eventTypes of SourceApp events, which transferd writes.
// Connect and Forge payloads naming them are KindUnknown: the platform's
// deliveries can never pass for transferd's own actions.
var appKinds = map[string]Kind{
	string(KindPlatformCalled):   KindPlatformCalled,
	string(KindUploadReported):   KindUploadReported,
	string(KindUploadDiscovered): KindUploadDiscovered,
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
		var f [2][]byte
		if err := members(w.TransferError, "transferError", f[:], "exceptionType", "safeStackTrace"); err != nil {
			return err
		}
		var (
			te  TransferError
			err error
		)
		if te.ExceptionType, err = optionalString(f[0], "transferError.exceptionType"); err != nil {
			return err
		}
		if te.SafeStackTrace, err = optionalString(f[1], "transferError.safeStackTrace"); err != nil {
			return err
		}
		if te != (TransferError{}) {
			e.Error = &te
		}
	case KindPlatformCalled:
		call, err := parseCall(e.Payload)
		if err != nil {
			return err
		}
		e.Call = call
	case KindUploadReported:
		r, err := parseReport(e.Payload)
		if err != nil {
			return err
		}
		e.Report = r
	case KindUploadDiscovered:
		u, err := parseDiscovered(e.Payload)
		if err != nil {
			return err
		}
		e.Upload = u
	case KindTransferSettled:
		for _, f := range []struct {
			raw  []byte
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

// detailFields are the migrationDetails members read, in the order
// parseDetails expects them.
var detailFields = []string{"migrationId", "migrationScopeId", "name", "cloudUrl", "createdAt", "jiraClientKey", "confluenceClientKey"}

// detailNames are detailFields as errors name them.
var detailNames = func() (names [7]string) {
	for i, f := range detailFields {
		names[i] = "migrationDetails." + f
	}
	return names
}()

func parseDetails(e *Event, raw []byte) error {
	if raw == nil || isNull(raw) {
		return nil
	}
	var f [len(detailNames)][]byte
	if err := members(raw, "migrationDetails", f[:], detailFields...); err != nil {
		return err
	}
	var (
		m   Migration
		err error
	)
	for i, dst := range []*string{&m.MigrationID, &m.MigrationScopeID, &m.Name, &m.CloudURL} {
		if *dst, err = optionalString(f[i], detailNames[i]); err != nil {
			return err
		}
		if i < 2 && len(*dst) > MaxKeyLength {
			return invalid(detailNames[i], "longer than "+strconv.Itoa(MaxKeyLength)+" bytes")
		}
	}
	if m.CreatedAt, err = parseCreatedAt(f[4]); err != nil {
		return err
	}
	for i, raw := range f[5:] {
		ck, err := optionalString(raw, detailNames[5+i])
		if err != nil {
			return err
		}
		if ck != "" && ck != "unknown" {
			if err := checkToken(detailNames[5+i], ck, MaxKeyLength); err != nil {
				return err
			}
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
// (1e11 seconds is the year 5138). The time must lie in [MinCreatedAt,
// MaxCreatedAt).
func parseCreatedAt(raw []byte) (time.Time, error) {
	t, err := readCreatedAt(raw)
	if err != nil || t.IsZero() {
		return t, err
	}
	if t.Before(MinCreatedAt) || !t.Before(MaxCreatedAt) {
		return time.Time{}, invalid("migrationDetails.createdAt", "must lie from "+
			MinCreatedAt.Format(time.DateOnly)+" to before "+MaxCreatedAt.Format(time.DateOnly))
	}
	return t, nil
}

func readCreatedAt(raw []byte) (time.Time, error) {
	const field = "migrationDetails.createdAt"
	if raw == nil || isNull(raw) {
		return time.Time{}, nil
	}
	text := string(raw)
	if raw[0] == '"' {
		text = unquote(raw)
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
	switch {
	case f == 0: // an unset epoch, as absent
		return time.Time{}, nil
	case f >= 1e11:
		return time.UnixMilli(int64(f)).UTC(), nil
	}
	return time.Unix(int64(f), 0).UTC(), nil
}

// contentIDPrefix starts the identity of an event without messageId:
// "sha256:" and the hex digest of the payload's canonical JSON (keys sorted,
// insignificant space removed), so an exact re-delivery still de-duplicates.
const contentIDPrefix = "sha256:"

// digest is the hex SHA-256 of payload's canonical JSON.
func digest(payload []byte) string {
	bp := canonBufs.Get().(*[]byte)
	c := appendCanonical((*bp)[:0], payload)
	sum := sha256.Sum256(c)
	if cap(c) <= 64<<10 { // keep no giant's buffer
		*bp = c[:0]
		canonBufs.Put(bp)
	}
	return hex.EncodeToString(sum[:])
}

// canonBufs are buffers for digest's canonical forms (appendCanonical
// walks recursively, so a buffer on digest's stack would escape anyway).
var canonBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, 2048)
	return &b
}}

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

// ValidIssuer reports whether s can be an issuer (a Connect clientKey or a
// Forge installationId): 1 to MaxKeyLength bytes of printable ASCII
// without spaces.
func ValidIssuer(s string) bool { return checkToken("", s, MaxKeyLength) == nil }

// checkToken refuses s unless it is 1 to max bytes of printable ASCII
// without spaces (safe in a NATS header and a log line).
func checkToken(field, s string, max int) error {
	if len(s) == 0 || len(s) > max {
		return invalid(field, "must be 1 to "+strconv.Itoa(max)+" bytes")
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7F {
			return invalid(field, "may contain only printable ASCII characters without spaces")
		}
	}
	return nil
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

func requireString(raw []byte, field string) (string, error) {
	if len(raw) > 2 && raw[0] == '"' {
		// eventType names one of a few constants: share the constant's
		// bytes when raw is one of them spelt plainly.
		if s, ok := eventTypes[string(raw[1:len(raw)-1])]; ok {
			return s, nil
		}
	}
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

// requireKnown is requireString, sharing known's bytes when raw is
// known spelt plainly (without escapes).
func requireKnown(raw []byte, field, known string) (string, error) {
	if known != "" && len(raw) == len(known)+2 && raw[0] == '"' && string(raw[1:len(raw)-1]) == known {
		return known, nil
	}
	return requireString(raw, field)
}

// eventTypes holds every eventType the engine knows, each mapped to itself.
var eventTypes = func() map[string]string {
	m := map[string]string{}
	for _, kinds := range []map[string]Kind{connectKinds, forgeKinds, appKinds} {
		for t := range kinds {
			m[t] = t
		}
	}
	return m
}()

func optionalString(raw []byte, field string) (string, error) {
	if raw == nil || isNull(raw) {
		return "", nil
	}
	if raw[0] != '"' {
		return "", invalid(field, "must be a string")
	}
	return unquote(raw), nil
}

// members sets out[i] to the raw value of the member names[i] of the
// object raw (nil where absent), or returns a validation error when raw is
// not an object. out is as long as names.
func members(raw []byte, field string, out [][]byte, names ...string) error {
	if raw[0] != '{' {
		return invalid(field, "must be an object")
	}
	eachMember(raw, func(key, val []byte) {
		k := key[1 : len(key)-1] // decoded only when escaped, once
		if bytes.IndexByte(k, '\\') >= 0 {
			k = []byte(unquote(key))
		}
		for i, n := range names {
			if string(k) == n {
				out[i] = val
			}
		}
	})
	return nil
}

func isNull(raw []byte) bool { return string(raw) == "null" }

// jsonReason shortens encoding/json's messages to what a sender can act on.
func jsonReason(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return se.Error() + " at byte " + strconv.FormatInt(se.Offset, 10)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// Caps of a platform-called payload.
const (
	maxCallText       = 4096 // message, error
	maxCallMessageIDs = 1000
)

// parseCall reads the PlatformCall of a platform-called payload, which
// transferd wrote: strictly, unknown members aside.
func parseCall(payload []byte) (*PlatformCall, error) {
	var c PlatformCall
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, invalid("", "platform-called payload: "+jsonReason(err))
	}
	switch {
	case checkToken("op", c.Op, 64) != nil:
		return nil, invalid("op", "required, 1 to 64 bytes of printable ASCII")
	case !ValidOutcome(c.Outcome):
		return nil, invalid("outcome", "must be ok, settled, rejected, exhausted or invalid")
	case c.Status != "" && checkToken("status", c.Status, 32) != nil:
		return nil, invalid("status", "at most 32 bytes of printable ASCII")
	case c.Percent < 0 || c.Percent > 100:
		return nil, invalid("percent", "must be 0 to 100")
	case c.HTTPStatus != 0 && (c.HTTPStatus < 100 || c.HTTPStatus > 599):
		return nil, invalid("httpStatus", "must be 0 or 100 to 599")
	case c.Attempts < 0:
		return nil, invalid("attempts", "must not be negative")
	case len(c.Message) > maxCallText || len(c.Error) > maxCallText:
		return nil, invalid("message", "message and error are at most 4096 bytes")
	case len(c.MessageIDs) > maxCallMessageIDs:
		return nil, invalid("messageIds", "at most 1000")
	case c.At.IsZero() || c.At.Before(MinCreatedAt) || !c.At.Before(MaxCreatedAt):
		return nil, invalid("at", "required, from "+MinCreatedAt.Format(time.DateOnly)+" to before "+MaxCreatedAt.Format(time.DateOnly))
	}
	for _, id := range c.MessageIDs {
		if err := checkToken("messageIds", id, MaxMessageIDLength); err != nil {
			return nil, err
		}
	}
	c.At = c.At.UTC()
	return &c, nil
}

// MaxUploadKey caps an upload-reported key (bytes).
const MaxUploadKey = 1024

// parseReport reads the UploadReport of an upload-reported payload, which
// transferd wrote: strictly, unknown members aside.
func parseReport(payload []byte) (*UploadReport, error) {
	var r UploadReport
	if err := json.Unmarshal(payload, &r); err != nil {
		return nil, invalid("", "upload-reported payload: "+jsonReason(err))
	}
	switch {
	case r.Key == "" || len(r.Key) > MaxUploadKey || !utf8.ValidString(r.Key):
		return nil, invalid("key", "required, at most 1024 bytes of UTF-8")
	case workRank(r.Status) == 0:
		return nil, invalid("status", "must be progress, done, failed or requeued")
	case r.Percent < 0 || r.Percent > 100 || (r.Percent != 0 && r.Status != WorkProgress):
		return nil, invalid("percent", "0 to 100, only with status progress")
	case r.Final && r.Status == WorkProgress:
		return nil, invalid("final", "not with status progress")
	case r.Attempt < 1 || r.Attempt > 1_000_000:
		return nil, invalid("attempt", "must be 1 to 1000000")
	case r.Since < 0 || r.Since > r.Attempt:
		return nil, invalid("since", "must be 0 to attempt")
	case len(r.Message) > maxCallText:
		return nil, invalid("message", "at most 4096 bytes")
	case r.By != "" && checkToken("by", r.By, 32) != nil:
		return nil, invalid("by", "at most 32 bytes of printable ASCII")
	case r.At.IsZero() || r.At.Before(MinCreatedAt) || !r.At.Before(MaxCreatedAt):
		return nil, invalid("at", "required, from "+MinCreatedAt.Format(time.DateOnly)+" to before "+MaxCreatedAt.Format(time.DateOnly))
	}
	r.At = r.At.UTC()
	return &r, nil
}

// parseDiscovered reads the upload of an upload-discovered payload, which
// transferd wrote: key (as the platform's s3Key) and label.
func parseDiscovered(payload []byte) (*Upload, error) {
	var d struct {
		Key   string `json:"key"`
		Label string `json:"label"`
	}
	if err := json.Unmarshal(payload, &d); err != nil {
		return nil, invalid("", "upload-discovered payload: "+jsonReason(err))
	}
	switch {
	case d.Key == "" || len(d.Key) > MaxUploadKey || !utf8.ValidString(d.Key):
		return nil, invalid("key", "required, at most 1024 bytes of UTF-8")
	case len(d.Label) > MaxUploadKey || !utf8.ValidString(d.Label):
		return nil, invalid("label", "at most 1024 bytes of UTF-8")
	}
	return &Upload{Key: d.Key, Label: d.Label, Discovered: true}, nil
}
