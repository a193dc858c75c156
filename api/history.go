package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/engine/journal"
)

// history is a transfer's events as stored: each identity once, at its
// first stream sequence, with how many later messages repeat it.
type history struct {
	events     []journal.Envelope
	duplicates []int
}

// readHistory scans the journal for transfer id's events. Messages that do
// not decode are logged and left out.
func (s *Server) readHistory(r *http.Request, id string) (*history, error) {
	h := &history{}
	first := make(map[string]int)
	for env, err := range s.journal.Scan(r.Context(), journal.TransferEventsFilter(id)) {
		if err != nil {
			var cerr *journal.CorruptError
			if errors.As(err, &cerr) {
				s.log.Warn("history: skipping a message that does not decode", "transferId", id, "seq", cerr.Seq, "err", err)
				continue
			}
			return nil, err
		}
		if i, ok := first[env.ID]; ok {
			h.duplicates[i]++
			continue
		}
		if !json.Valid(env.Payload) {
			s.log.Warn("history: skipping an envelope whose payload is not JSON", "transferId", id, "seq", env.Seq)
			continue
		}
		first[env.ID] = len(h.events)
		h.events = append(h.events, env)
		h.duplicates = append(h.duplicates, 0)
	}
	return h, nil
}

// handleEvents serves GET /v1/transfers/{id}/events:
// {"events":[{"seq","receivedAt","duplicates","v","id","source","kind","transferId","issuer","payload"}]}.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) error {
	id, err := transferID(r)
	if err != nil {
		return err
	}
	if err := checkQuery(r); err != nil {
		return err
	}
	h, err := s.readHistory(r, id)
	if err != nil {
		return err
	}
	if len(h.events) == 0 {
		return notFound("no events for transfer " + id)
	}
	b := make([]byte, 0, 256*len(h.events))
	b = append(b, `{"events":[`...)
	for i := range h.events {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendEnvelope(b, &h.events[i], h.duplicates[i], true)
	}
	b = append(b, "]}\n"...)
	writeBody(w, http.StatusOK, b)
	return nil
}

// appendEnvelope appends env as {"seq","receivedAt",["duplicates",]"v","id",
// "source","kind","transferId","issuer","payload"}, the payload bytes
// verbatim: encoding/json would compact and re-escape a RawMessage.
func appendEnvelope(b []byte, env *journal.Envelope, duplicates int, withDuplicates bool) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, env.Seq, 10)
	b = append(b, `,"receivedAt":"`...)
	b = env.ReceivedAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if withDuplicates {
		b = append(b, `,"duplicates":`...)
		b = strconv.AppendInt(b, int64(duplicates), 10)
	}
	b = append(b, `,"v":`...)
	b = strconv.AppendInt(b, int64(env.V), 10)
	b = append(b, `,"id":`...)
	b = appendString(b, env.ID)
	b = append(b, `,"source":`...)
	b = appendString(b, string(env.Source))
	b = append(b, `,"kind":`...)
	b = appendString(b, string(env.Kind))
	b = append(b, `,"transferId":`...)
	b = appendString(b, env.TransferID)
	b = append(b, `,"issuer":`...)
	b = appendString(b, env.Issuer)
	b = append(b, `,"payload":`...)
	b = append(b, env.Payload...)
	return append(b, '}')
}

// appendString appends s as a JSON string, escaped as encoding/json does.
func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always encodes
	return append(b, q...)
}

// transferID is the {id} of the route, which must be a possible transfer
// id (engine.ValidID): anything else could match other subjects in a
// journal filter.
func transferID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if !engine.ValidID(id) {
		return "", invalidParam("id", "not a transfer id (1 to 128 of A-Z a-z 0-9 -_:=+@~)")
	}
	return id, nil
}
