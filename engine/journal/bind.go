package journal

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Bind records issuer as the owner of transferID unless one is recorded
// already (the first writer wins), and returns the owner. Keys in the
// bindings bucket are transfer ids with every byte outside [-_a-zA-Z0-9]
// written as =XX (hex). Failures to reach the bucket wrap ErrUnavailable.
//
// With SyncAlways, Bind returns once the binding is on disk, also when it
// finds one (another caller may have written it an instant ago): an event
// appended after Bind can then never be on disk without its binding, not
// even one that was never acknowledged.
func (j *Journal) Bind(ctx context.Context, transferID, issuer string) (string, error) {
	if transferID == "" {
		return "", fmt.Errorf("%w: empty transferId", ErrInvalid)
	}
	key := bindingKey(transferID)
	owner, err := j.bind(ctx, key, issuer)
	if err != nil {
		return "", unavailable("bind "+transferID, err)
	}
	if j.syncer != nil {
		if err := j.syncer.sync(ctx, kvStream(BucketBindings), nil); err != nil {
			return "", unavailable("bind "+transferID, err)
		}
	}
	return owner, nil
}

// bind is Create, or Get when the key exists. On a replicated bucket the
// leader refuses a Create while another Create of the key is in flight,
// before any replica has applied it, so Get (which any replica answers)
// may find nothing yet: ask again, Create too, a few times.
func (j *Journal) bind(ctx context.Context, key, issuer string) (string, error) {
	for attempt := 1; ; attempt++ {
		_, err := j.bindings.Create(ctx, key, []byte(issuer))
		if err == nil {
			return issuer, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return "", err
		}
		kv, err := j.bindings.Get(ctx, key)
		if err == nil {
			return string(kv.Value()), nil
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) || attempt == maxBindAttempts {
			return "", err
		}
		select {
		case <-time.After(time.Duration(attempt) * 5 * time.Millisecond):
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// Owner returns the issuer Bind recorded for transferID; ErrNotFound when
// none is. Failures to reach the bucket wrap ErrUnavailable.
func (j *Journal) Owner(ctx context.Context, transferID string) (string, error) {
	if transferID == "" {
		return "", fmt.Errorf("%w: empty transferId", ErrInvalid)
	}
	e, err := j.bindings.Get(ctx, bindingKey(transferID))
	if err != nil {
		return "", kvErr("owner of "+transferID, err)
	}
	return string(e.Value()), nil
}

// maxBindAttempts bounds bind's rounds of Create and Get.
const maxBindAttempts = 8

// bindingKey escapes a transfer id into a valid KV key, reversibly.
func bindingKey(id string) string {
	const hex = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c == '-' || c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if ok && b == nil {
			continue
		}
		if b == nil {
			b = append(make([]byte, 0, len(id)+8), id[:i]...)
		}
		if ok {
			b = append(b, c)
		} else {
			b = append(b, '=', hex[c>>4], hex[c&15])
		}
	}
	if b == nil {
		return id
	}
	return string(b)
}
