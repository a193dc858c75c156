package journal

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// leaderKV is a bucket whose Get asks the bucket stream's leader, not a
// direct get that any replica answers: a key written an instant ago
// through another server of the cluster (another transferd instance) is
// found, as the leader acknowledged the write only once it had applied
// it. Everything else is the bucket as nats.go serves it.
type leaderKV struct {
	jetstream.KeyValue
	nc      *nats.Conn
	timeout time.Duration
}

// codeNoMessage is JetStream's "no message found".
const codeNoMessage jetstream.ErrorCode = 10037

// Get returns the latest value of key, as the stream leader has it; a key
// never written, deleted or purged is jetstream.ErrKeyNotFound.
func (kv leaderKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, kv.timeout)
		defer cancel()
	}
	if key == "" || strings.ContainsAny(key, "*> \t\r\n") || strings.HasPrefix(key, ".") || strings.HasSuffix(key, ".") {
		return nil, jetstream.ErrInvalidKey // a wildcard would match other keys
	}
	bucket := kv.Bucket()
	req, _ := json.Marshal(map[string]string{"last_by_subj": "$KV." + bucket + "." + key})
	resp, err := kv.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+kvStream(bucket), req)
	if err != nil {
		return nil, err
	}
	var r struct {
		Error   *jetstream.APIError `json:"error"`
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Header  []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return nil, fmt.Errorf("get %s from %s: %w", key, bucket, err)
	}
	if r.Error != nil {
		if r.Error.ErrorCode == codeNoMessage {
			return nil, jetstream.ErrKeyNotFound
		}
		return nil, r.Error
	}
	if r.Message == nil {
		return nil, fmt.Errorf("get %s from %s: %w", key, bucket, jetstream.ErrInvalidJetStreamResponse)
	}
	op := jetstream.KeyValuePut
	if len(r.Message.Header) > 0 {
		h, err := nats.DecodeHeadersMsg(r.Message.Header)
		if err != nil {
			return nil, err
		}
		switch h.Get("KV-Operation") {
		case "DEL", "PURGE":
			return nil, jetstream.ErrKeyNotFound
		}
	}
	return kvEntry{bucket: bucket, key: key, value: r.Message.Data, rev: r.Message.Seq, created: r.Message.Time, op: op}, nil
}

// kvEntry is a value leaderKV.Get read.
type kvEntry struct {
	bucket, key string
	value       []byte
	rev         uint64
	created     time.Time
	op          jetstream.KeyValueOp
}

func (e kvEntry) Bucket() string                  { return e.bucket }
func (e kvEntry) Key() string                     { return e.key }
func (e kvEntry) Value() []byte                   { return e.value }
func (e kvEntry) Revision() uint64                { return e.rev }
func (e kvEntry) Created() time.Time              { return e.created }
func (e kvEntry) Delta() uint64                   { return 0 }
func (e kvEntry) Operation() jetstream.KeyValueOp { return e.op }
