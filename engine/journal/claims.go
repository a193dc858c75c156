package journal

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Claim is a first-writer-wins record of an action on a transfer (a
// settle), so that across restarts and instances the action is decided
// once: whoever creates the claim decides, everyone else reads the
// decision.
type Claim struct {
	Value    []byte
	Revision uint64
}

// claimPrefix starts the claim keys in the bindings bucket. Binding keys
// are escaped transfer ids, which never contain a dot, so no claim key is
// ever a binding key.
const claimPrefix = "claim."

// ClaimKey is the bucket key of the claim on action (a subject token
// such as "settle") for transferID.
func ClaimKey(action, transferID string) string {
	return claimPrefix + action + "." + bindingKey(transferID)
}

// Claim records value as the claim on action for transferID unless one is
// recorded already, and returns the claim that holds: won reports whether
// it is value, written now. Claims live in the bindings bucket (create-only,
// kept as long as the bucket) under ClaimKey. With SyncAlways, Claim
// returns once the claim is on disk, also when it finds one. Failures wrap
// ErrUnavailable; an empty action or transfer id is ErrInvalid.
func (j *Journal) Claim(ctx context.Context, action, transferID string, value []byte) (c Claim, won bool, err error) {
	if !validToken(action) || transferID == "" || len(value) == 0 {
		return Claim{}, false, fmt.Errorf("%w: claim %q on %q", ErrInvalid, action, transferID)
	}
	key := ClaimKey(action, transferID)
	c, won, err = j.claim(ctx, key, value)
	if err != nil {
		return Claim{}, false, unavailable("claim "+key, err)
	}
	if j.syncer != nil {
		if err := j.syncer.sync(ctx, kvStream(BucketBindings), nil); err != nil {
			return Claim{}, false, unavailable("claim "+key, err)
		}
	}
	return c, won, nil
}

// claim is Create, or Get when the key exists, as bind does (a replicated
// bucket may refuse a Create before any replica has applied another).
func (j *Journal) claim(ctx context.Context, key string, value []byte) (Claim, bool, error) {
	for attempt := 1; ; attempt++ {
		rev, err := j.bindings.Create(ctx, key, value)
		if err == nil {
			return Claim{Value: value, Revision: rev}, true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return Claim{}, false, err
		}
		e, err := j.bindings.Get(ctx, key)
		if err == nil {
			return Claim{Value: e.Value(), Revision: e.Revision()}, false, nil
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) || attempt == 8 {
			return Claim{}, false, err
		}
		select {
		case <-time.After(time.Duration(attempt) * 5 * time.Millisecond):
		case <-ctx.Done():
			return Claim{}, false, ctx.Err()
		}
	}
}

// GetClaim returns the claim on action for transferID; ErrNotFound when
// none is recorded.
func (j *Journal) GetClaim(ctx context.Context, action, transferID string) (Claim, error) {
	key := ClaimKey(action, transferID)
	e, err := j.bindings.Get(ctx, key)
	if err != nil {
		return Claim{}, kvErr("claim "+key, err)
	}
	return Claim{Value: e.Value(), Revision: e.Revision()}, nil
}
