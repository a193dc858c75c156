package journal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// GroupCommit says how concurrent appends share the cost of a commit.
type GroupCommit int

const (
	// GroupCommitAuto is GroupCommitSync on an embedded server with
	// Config.SyncAlways, GroupCommitAtomic on an external NATS (whose
	// files the journal cannot reach), and GroupCommitOff on an embedded
	// server syncing by interval, whose page cache already coalesces
	// writes.
	GroupCommitAuto GroupCommit = iota
	// GroupCommitSync publishes every message on its own, pipelined, to an
	// embedded server that does not sync, and syncs the stream's files
	// itself before answering: the appends waiting at the same time share
	// one fsync. It needs an embedded server with Config.SyncAlways (without
	// it, it is GroupCommitOff; with an external NATS, GroupCommitAtomic).
	GroupCommitSync
	// GroupCommitAtomic commits the appends waiting at the same time as one
	// atomic batch (nats-server 2.12 or later; one publish per message on
	// an older server): an embedded server with Config.SyncAlways syncs
	// each batch once, a replicated stream replicates it in one round.
	GroupCommitAtomic
	// GroupCommitOff publishes every message on its own; an embedded server
	// with Config.SyncAlways syncs each.
	GroupCommitOff
)

func (g GroupCommit) String() string {
	switch g {
	case GroupCommitAuto:
		return "auto"
	case GroupCommitSync:
		return "sync"
	case GroupCommitAtomic:
		return "atomic"
	case GroupCommitOff:
		return "off"
	}
	return "GroupCommit(" + strconv.Itoa(int(g)) + ")"
}

// Limits of a group commit.
const (
	// defaultMaxBatch is Config.MaxBatch's default; serverMaxBatch is
	// nats-server's own limit on an atomic batch.
	defaultMaxBatch = 256
	serverMaxBatch  = 1000
	// maxBatchBytes bounds the payload bytes of one commit.
	maxBatchBytes = 8 << 20
	// minAtomic is the smallest batch committed atomically. A smaller one
	// is published a message at a time (pipelined): nats-server stages an
	// atomic batch of a single-replica stream in a store of its own, whose
	// creation alone costs about four disk syncs.
	minAtomic = 4
	// maxRounds bounds how often one batch is committed again after a
	// refusal for a duplicate.
	maxRounds = 3
	// inProcessPause is the wait before publishing again a message whose
	// ID another publisher's message is being stored under (times the
	// round).
	inProcessPause = 5 * time.Millisecond
	// batchHeaderRoom is what the batch headers add to a message, at most.
	batchHeaderRoom = 128
)

// Headers of nats-server's atomic batch publish (ADR-50), and of the
// expectations that make a duplicate probe fail once past the duplicate
// check.
const (
	hdrBatchID         = "Nats-Batch-Id"
	hdrBatchSeq        = "Nats-Batch-Sequence"
	hdrBatchCommit     = "Nats-Batch-Commit"
	hdrExpectedLastID  = "Nats-Expected-Last-Msg-Id"
	hdrExpectedLastSeq = "Nats-Expected-Last-Sequence"
)

// JetStream error codes the committer acts on.
const (
	// codeBatchDuplicate: an atomic batch holds a message ID already in the
	// stream's duplicate window (or twice); nothing was stored.
	codeBatchDuplicate jetstream.ErrorCode = 10201
	// codeDuplicateInProcess: a message ID is being stored by another
	// publisher on a replicated stream.
	codeDuplicateInProcess jetstream.ErrorCode = 10158
	// codeAtomicDisabled: the stream does not allow atomic batches.
	codeAtomicDisabled jetstream.ErrorCode = 10174
	// codeWrongLastMsgID and codeWrongLastSeq: a probe that was not a
	// duplicate, refused by its impossible expectation.
	codeWrongLastMsgID jetstream.ErrorCode = 10070
	codeWrongLastSeq   jetstream.ErrorCode = 10071
)

// errClosed fails appends queued when the journal closes.
var errClosed = errors.New("journal closed")

// CommitStats counts the work of the journal's group commit since Open.
type CommitStats struct {
	// Syncs is the number of fsync rounds of GroupCommitSync, and Synced
	// the appends and publishes they made durable.
	Syncs, Synced uint64
	// Batches is the number of atomic batch commits acknowledged, and
	// Batched the messages they stored.
	Batches, Batched uint64
	// Singles counts messages published on their own by the committer:
	// batches below the atomic threshold, and every message after a fall
	// back to single publishes.
	Singles uint64
	// Coalesced counts appends answered with the answer of another append
	// of the same message ID in the same batch.
	Coalesced uint64
	// Retries counts batches refused for a duplicate and committed again
	// without it.
	Retries uint64
	// Failures counts commits that acknowledged no one.
	Failures uint64
}

type commitCounters struct {
	syncs, synced                                           atomic.Uint64
	batches, batched, singles, coalesced, retries, failures atomic.Uint64
}

func (c *commitCounters) snapshot() CommitStats {
	return CommitStats{
		Syncs: c.syncs.Load(), Synced: c.synced.Load(),
		Batches: c.batches.Load(), Batched: c.batched.Load(), Singles: c.singles.Load(),
		Coalesced: c.coalesced.Load(), Retries: c.retries.Load(), Failures: c.failures.Load(),
	}
}

// committer group-commits the messages of one stream. Callers queue a
// message and wait; one goroutine takes everything queued (up to maxMsgs
// and maxBatchBytes), commits it as one atomic batch, and answers each
// caller once the batch is acknowledged. While a batch is being written the
// next one forms in the queue, so batches grow with the load, and the first
// message on an idle journal leaves at once.
type committer struct {
	stream  string
	nc      *nats.Conn
	js      jetstream.JetStream
	timeout time.Duration
	maxMsgs int
	// probe is the header, and its value, that a duplicate probe carries:
	// an expectation no message meets, checked only after the duplicate
	// check (which one depends on the stream being replicated).
	probeKey, probeVal string
	log                *slog.Logger
	stats              *commitCounters

	atomicOK  atomic.Bool // the stream accepts atomic batches
	inProcess bool        // the last round met codeDuplicateInProcess (loop only)
	pause     sync.Mutex  // held by tests to let a batch build up

	mu     sync.Mutex
	queue  []*request
	spare  []*request // the last batch's slice, for reuse
	closed bool
	wake   chan struct{}
	done   chan struct{}
}

// request is one queued message and its caller.
type request struct {
	ctx   context.Context // the caller's: once it has ended, the message is not sent
	msg   *nats.Msg
	id    string      // Nats-Msg-Id, "" for none
	reply chan result // buffered: answering never blocks
}

type result struct {
	ack Ack
	err error
}

// group is the requests of one batch that carry the same message ID (or
// one request without an ID): one message is written for all of them.
type group struct {
	msg  *nats.Msg
	id   string
	reqs []*request
}

func newCommitter(stream string, j *Journal, replicas int, stats *commitCounters) *committer {
	c := &committer{
		stream:  stream,
		nc:      j.nc,
		js:      j.js,
		timeout: j.cfg.Timeout,
		maxMsgs: j.cfg.MaxBatch,
		log:     j.cfg.Logger,
		stats:   stats,
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	// A single-replica stream checks an expected last sequence before the
	// duplicate window, so its probe expects a last message ID instead. A
	// replicated one stages a probe's message ID unless it fails before
	// the proposal, which an expected last sequence does and an expected
	// last message ID does not.
	c.probeKey, c.probeVal = hdrExpectedLastID, "transferd-probe-"+nuid.Next()
	if replicas > 1 {
		c.probeKey, c.probeVal = hdrExpectedLastSeq, strconv.FormatInt(1<<62, 10)
	}
	c.atomicOK.Store(true)
	go c.loop()
	return c
}

// submit queues m and waits for its answer or the end of ctx. An answer
// after ctx has ended is lost, but the message may still be stored.
func (c *committer) submit(ctx context.Context, m *nats.Msg, id string) (Ack, error) {
	r := &request{ctx: ctx, msg: m, id: id, reply: make(chan result, 1)}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return Ack{}, unavailable("publish "+m.Subject, errClosed)
	}
	c.queue = append(c.queue, r)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	select {
	case res := <-r.reply:
		if res.err != nil {
			return Ack{}, unavailable("publish "+m.Subject, res.err)
		}
		return res.ack, nil
	case <-ctx.Done():
		return Ack{}, unavailable("publish "+m.Subject, ctx.Err())
	}
}

// close fails every queued request and waits for the batch being written
// (at most the commit timeout) and for the committer to stop.
func (c *committer) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.done
		return
	}
	c.closed = true
	queued := c.queue
	c.queue = nil
	c.mu.Unlock()
	for _, r := range queued {
		r.reply <- result{err: errClosed}
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
	<-c.done
}

func (c *committer) loop() {
	defer close(c.done)
	for c.wait() {
		c.pause.Lock()
		batch := c.take()
		c.pause.Unlock()
		if len(batch) == 0 {
			continue
		}
		c.commit(batch)
		clear(batch)
		c.mu.Lock()
		c.spare = batch[:0]
		c.mu.Unlock()
	}
}

// wait waits until a request is queued, and reports false once closed.
func (c *committer) wait() bool {
	for {
		c.mu.Lock()
		queued, closed := len(c.queue) > 0, c.closed
		c.mu.Unlock()
		switch {
		case closed:
			return false
		case queued:
			return true
		}
		<-c.wake
	}
}

// take removes and returns the longest prefix of the queue within the
// batch limits.
func (c *committer) take() []*request {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.queue)
	size, k := 0, 0
	for ; k < n && k < c.maxMsgs; k++ {
		s := len(c.queue[k].msg.Data)
		if k > 0 && size+s > maxBatchBytes {
			break
		}
		size += s
	}
	batch := c.queue[:k:k]
	if k == n {
		c.queue, c.spare = c.spare, nil
	} else {
		c.queue = append(c.spare, c.queue[k:]...)
		c.spare = nil
	}
	return batch
}

// commit writes one batch and answers its callers.
func (c *committer) commit(batch []*request) {
	groups := c.group(batch)
	for round := 0; len(groups) > 0; round++ {
		if round > 0 && c.inProcess {
			// Another publisher's message with the same ID is being
			// replicated: its fate is known within a round trip.
			time.Sleep(time.Duration(round) * inProcessPause)
		}
		c.inProcess = false
		if len(groups) < minAtomic || !c.atomicOK.Load() {
			groups = c.publishEach(groups, round < maxRounds)
			continue
		}
		err := c.commitAtomic(groups)
		switch {
		case err == nil:
			return
		case isAPIError(err, codeBatchDuplicate, codeDuplicateInProcess) && round < maxRounds:
			c.stats.retries.Add(1)
			groups = c.probe(groups)
		case isAPIError(err, codeAtomicDisabled):
			c.atomicOK.Store(false)
			c.log.Warn("journal: stream refuses atomic batches; publishing one message at a time", "stream", c.stream, "err", err)
		default:
			c.stats.failures.Add(1)
			for _, g := range groups {
				g.answer(Ack{}, err)
			}
			return
		}
	}
}

// group merges the requests that carry the same message ID and drops
// those whose caller has gone.
func (c *committer) group(batch []*request) []*group {
	groups := make([]*group, 0, len(batch))
	var byID map[string]*group
	for _, r := range batch {
		if r.ctx.Err() != nil {
			continue
		}
		if r.id != "" {
			if g := byID[r.id]; g != nil {
				g.reqs = append(g.reqs, r)
				c.stats.coalesced.Add(1)
				continue
			}
		}
		g := &group{msg: r.msg, id: r.id, reqs: []*request{r}}
		if r.id != "" {
			if byID == nil {
				byID = make(map[string]*group, len(batch))
			}
			byID[r.id] = g
		}
		groups = append(groups, g)
	}
	return groups
}

func (g *group) answer(ack Ack, err error) {
	for _, r := range g.reqs {
		r.reply <- result{ack: ack, err: err}
	}
}

// batchAck is the answer to an atomic batch's commit: the sequence of its
// last message and how many it stored, or an error.
type batchAck struct {
	Error *jetstream.APIError `json:"error"`
	Seq   uint64              `json:"seq"`
	Batch string              `json:"batch"`
	Count int                 `json:"count"`
}

// commitAtomic writes groups as one atomic batch and, once it is
// acknowledged, answers every group. On an error it answers no one.
func (c *committer) commitAtomic(groups []*group) error {
	id := nuid.Next()
	n := len(groups)
	for i, g := range groups[:n-1] {
		if err := c.nc.PublishMsg(batchMsg(g.msg, id, i+1, false)); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	resp, err := c.nc.RequestMsgWithContext(ctx, batchMsg(groups[n-1].msg, id, n, true))
	if err != nil {
		return err
	}
	var ack batchAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return fmt.Errorf("commit of %d messages: %w: %q", n, jetstream.ErrInvalidJSAck, resp.Data)
	}
	if ack.Error != nil {
		return ack.Error
	}
	if ack.Batch != id || ack.Count != n || ack.Seq < uint64(n) {
		return fmt.Errorf("commit of %d messages: %w: %q", n, jetstream.ErrInvalidJSAck, resp.Data)
	}
	// An atomic batch is stored in one piece: its messages have
	// consecutive sequences ending at ack.Seq.
	first := ack.Seq - uint64(n) + 1
	for i, g := range groups {
		g.answer(Ack{Seq: first + uint64(i)}, nil)
	}
	c.stats.batches.Add(1)
	c.stats.batched.Add(uint64(n))
	return nil
}

// batchMsg is m as message seq of batch id.
func batchMsg(m *nats.Msg, id string, seq int, commit bool) *nats.Msg {
	h := make(nats.Header, len(m.Header)+3)
	for k, v := range m.Header {
		h[k] = v
	}
	h[hdrBatchID] = []string{id}
	h[hdrBatchSeq] = []string{strconv.Itoa(seq)}
	if commit {
		h[hdrBatchCommit] = []string{"1"}
	}
	return &nats.Msg{Subject: m.Subject, Header: h, Data: m.Data}
}

// probe finds out which messages of a batch refused for a duplicate are
// already stored. Each is published on its own with an expectation no
// message meets: the server answers a duplicate with the sequence stored
// first and refuses any other without storing it. probe answers the
// duplicates, and the groups whose probe failed otherwise, and returns the
// groups left to commit.
func (c *committer) probe(groups []*group) []*group {
	futures := make([]jetstream.PubAckFuture, len(groups))
	for i, g := range groups {
		if g.id == "" {
			continue
		}
		h := make(nats.Header, len(g.msg.Header)+1)
		for k, v := range g.msg.Header {
			h[k] = v
		}
		h[c.probeKey] = []string{c.probeVal}
		// The probe carries the real data: should the server ever store it,
		// it is the message itself, and the answer is its sequence.
		f, err := c.js.PublishMsgAsync(&nats.Msg{Subject: g.msg.Subject, Header: h, Data: g.msg.Data})
		if err != nil {
			g.answer(Ack{}, err)
			continue
		}
		futures[i] = f
	}
	keep := groups[:0]
	for i, g := range groups {
		f := futures[i]
		if f == nil {
			if g.id == "" {
				keep = append(keep, g)
			}
			continue
		}
		select { // the future fails by itself after Config.Timeout
		case pa := <-f.Ok():
			g.answer(Ack{Seq: pa.Sequence, Duplicate: pa.Duplicate}, nil)
		case err := <-f.Err():
			switch {
			case isAPIError(err, codeWrongLastMsgID, codeWrongLastSeq):
				keep = append(keep, g)
			case isAPIError(err, codeDuplicateInProcess):
				c.inProcess = true
				keep = append(keep, g)
			default:
				g.answer(Ack{}, err)
			}
		}
	}
	return keep
}

// publishEach publishes every group's message on its own, all before
// waiting for the first ack, and answers each; with retry, it returns
// instead the groups refused because another publisher's message with the
// same ID is in process.
func (c *committer) publishEach(groups []*group, retry bool) []*group {
	var busy []*group
	futures := make([]jetstream.PubAckFuture, len(groups))
	for i, g := range groups {
		f, err := c.js.PublishMsgAsync(g.msg)
		if err != nil {
			g.answer(Ack{}, err)
			continue
		}
		futures[i] = f
	}
	for i, g := range groups {
		f := futures[i]
		if f == nil {
			continue
		}
		select { // the future fails by itself after Config.Timeout
		case pa := <-f.Ok():
			g.answer(Ack{Seq: pa.Sequence, Duplicate: pa.Duplicate}, nil)
		case err := <-f.Err():
			if retry && isAPIError(err, codeDuplicateInProcess) {
				c.inProcess = true
				busy = append(busy, g)
				continue
			}
			g.answer(Ack{}, err)
		}
	}
	c.stats.singles.Add(uint64(len(groups) - len(busy)))
	return busy
}

// isAPIError reports whether err is a JetStream API error with one of codes.
func isAPIError(err error, codes ...jetstream.ErrorCode) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	for _, code := range codes {
		if apiErr.ErrorCode == code {
			return true
		}
	}
	return false
}
