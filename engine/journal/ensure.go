package journal

import (
	"context"
	"errors"
	"reflect"

	"github.com/nats-io/nats.go/jetstream"
)

// ensureStream creates the stream want describes when it is missing, and
// otherwise updates only the settings transferd owns (subjects, retention,
// description, de-duplication window, DenyDelete and DenyPurge, direct get,
// atomic publish, and the replica count want carries, which is the stream's
// own unless Config.Replicas is set), keeping what an operator may have
// tuned: the limits (MaxMsgs, MaxBytes, MaxAge, MaxMsgsPerSubject,
// MaxMsgSize, MaxConsumers, Discard), storage, placement, compression,
// metadata and the rest. It updates nothing when nothing it owns differs.
func (j *Journal) ensureStream(ctx context.Context, want jetstream.StreamConfig) (jetstream.Stream, error) {
	for attempt := 0; ; attempt++ {
		st, err := j.js.Stream(ctx, want.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			st, err = j.js.CreateStream(ctx, want)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) && attempt == 0 {
				continue // created by another journal meanwhile
			}
			return st, err
		}
		if err != nil {
			return nil, err
		}
		have := st.CachedInfo().Config
		next := ownedOnly(have, want)
		if reflect.DeepEqual(have, next) {
			return st, nil
		}
		return j.js.UpdateStream(ctx, next)
	}
}

// ownedOnly is have with the settings transferd owns taken from want.
func ownedOnly(have, want jetstream.StreamConfig) jetstream.StreamConfig {
	next := have
	next.Description = want.Description
	next.Subjects = want.Subjects
	next.Retention = want.Retention
	next.Replicas = want.Replicas
	next.Duplicates = want.Duplicates
	next.DenyDelete = want.DenyDelete
	next.DenyPurge = want.DenyPurge
	next.AllowDirect = want.AllowDirect
	next.AllowAtomicPublish = want.AllowAtomicPublish
	return next
}

// ensureKV creates the bucket cfg describes when it is missing; an existing
// bucket keeps its configuration, except the replica count when cfg
// carries another (Config.Replicas set).
func (j *Journal) ensureKV(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	for attempt := 0; ; attempt++ {
		kv, err := j.js.KeyValue(ctx, cfg.Bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = j.js.CreateKeyValue(ctx, cfg)
			if errors.Is(err, jetstream.ErrBucketExists) && attempt == 0 {
				continue // created by another journal meanwhile
			}
			return kv, err
		}
		if err != nil {
			return nil, err
		}
		st, err := j.js.Stream(ctx, kvStream(cfg.Bucket))
		if err != nil {
			return nil, err
		}
		if have := st.CachedInfo().Config; cfg.Replicas > 0 && have.Replicas != cfg.Replicas {
			have.Replicas = cfg.Replicas
			if _, err := j.js.UpdateStream(ctx, have); err != nil {
				return nil, err
			}
		}
		return kv, nil
	}
}
