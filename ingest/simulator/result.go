package simulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/transferd/transferd/engine"
)

// Result is what a run sent and what the server answered. Its JSON form
// (the simulate command's --json) leaves out the long lists: Acked,
// Refused and Expect are written by WriteExpect.
type Result struct {
	Seed      int64  `json:"seed"`
	Target    string `json:"target"`
	KeyServer string `json:"keyServer"`

	Transfers          int `json:"transfers"`
	Reruns             int `json:"reruns"`
	ConnectTenants     int `json:"connectTenants"`
	ForgeInstallations int `json:"forgeInstallations"`
	// Events is the number of distinct good events; Sent counts every
	// copy (duplicates included, retries not).
	Events int   `json:"events"`
	Sent   int64 `json:"sent"`
	// Acknowledged counts the good requests answered 200; Duplicates those
	// of them the server reported as duplicates.
	Acknowledged int64 `json:"acknowledged"`
	Duplicates   int64 `json:"duplicates"`
	// Retries counts the requests sent again after a 5xx, 408, 429 or a
	// network error.
	Retries int64 `json:"retries"`
	// Unacknowledged is the number of distinct good events never answered
	// 200 (refused, or still failing at the deadline).
	Unacknowledged int `json:"unacknowledged"`
	// Failed counts the good requests the server refused with a 4xx (or
	// acknowledged with a malformed body).
	Failed int64 `json:"failed"`
	// SeqMismatches counts acknowledgements of an event that named a
	// different stream sequence than its first one.
	SeqMismatches int64 `json:"seqMismatches"`
	Bad           Bad   `json:"bad"`
	// Statuses counts every answer by HTTP status, retries and bad requests
	// included; 0 counts network errors.
	Statuses map[int]int64 `json:"statuses"`
	Requests int64         `json:"requests"`

	// Duration is the sending phase (after installs and probes).
	Duration          time.Duration `json:"-"`
	DurationSeconds   float64       `json:"durationSeconds"`
	EventsPerSecond   float64       `json:"eventsPerSecond"` // acknowledged good requests per second
	RequestsPerSecond float64       `json:"requestsPerSecond"`
	// Latency is over the acknowledged good requests.
	Latency Latency `json:"latency"`

	// Failures are the first problems: good events refused or unanswered,
	// bad requests accepted.
	Failures []Failure `json:"failures,omitempty"`

	// Platform is what the simulator's platform saw, when it had one.
	Platform *PlatformResult `json:"platform,omitempty"`

	// Acked lists every acknowledged good event once, by identity.
	Acked []AckedEvent `json:"-"`
	// Refused lists every bad request the server refused.
	Refused []RefusedRequest `json:"-"`
	// Expect is what every transfer with an acknowledged event must end up
	// as, by transferId.
	Expect []TransferExpect `json:"-"`
}

// Bad counts the bad requests.
type Bad struct {
	Planned int   `json:"planned"`
	Sent    int64 `json:"sent"`
	// Refused counts those refused with the status their kind wants;
	// RefusedOther those refused with another 4xx.
	Refused      int64 `json:"refused"`
	RefusedOther int64 `json:"refusedOther"`
	// Accepted counts those the server answered 2xx: each is a bug.
	Accepted int64 `json:"accepted"`
	// ByKind counts the answers by kind and status.
	ByKind map[BadKind]map[int]int64 `json:"byKind"`
}

// Latency percentiles.
type Latency struct {
	P50, P90, P99, Max time.Duration
}

// MarshalJSON writes milliseconds: {"p50Ms":…,"p90Ms":…,"p99Ms":…,"maxMs":…}.
func (l Latency) MarshalJSON() ([]byte, error) {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return json.Marshal(map[string]float64{"p50Ms": ms(l.P50), "p90Ms": ms(l.P90), "p99Ms": ms(l.P99), "maxMs": ms(l.Max)})
}

func latency(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	slices.Sort(d)
	at := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	return Latency{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: d[len(d)-1]}
}

// Failure is one thing the server got wrong.
type Failure struct {
	ID         string      `json:"id,omitempty"`
	TransferID string      `json:"transferId,omitempty"`
	Kind       engine.Kind `json:"kind,omitempty"` // good events
	Bad        BadKind     `json:"bad,omitempty"`  // bad requests
	Status     int         `json:"status,omitempty"`
	Code       string      `json:"code,omitempty"`
	Message    string      `json:"message,omitempty"`
}

// AckedEvent is a good event the server acknowledged.
type AckedEvent struct {
	ID         string      `json:"id"`
	TransferID string      `json:"transferId"`
	Kind       engine.Kind `json:"kind"`
	// Seq is the stream sequence of the first acknowledgement.
	Seq uint64 `json:"seq"`
	// Acks counts the 200 answers it got (more than one for duplicates).
	Acks int `json:"acks"`
}

// RefusedRequest is a bad request the server refused.
type RefusedRequest struct {
	// ID is the identity the server would have given it; empty when the
	// body does not parse.
	ID         string  `json:"id,omitempty"`
	TransferID string  `json:"transferId,omitempty"`
	Kind       BadKind `json:"kind"`
	Status     int     `json:"status"`
	Want       int     `json:"want"`
	Code       string  `json:"code,omitempty"`
}

// ErrFailed is wrapped by Result.Err.
var ErrFailed = errors.New("simulate failed")

// Err says what went wrong: good events not acknowledged, bad requests
// accepted. It is nil when the server behaved.
func (r *Result) Err() error {
	var problems []string
	if r.Unacknowledged > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d good events were not acknowledged", r.Unacknowledged, r.Events))
	}
	if r.Bad.Accepted > 0 {
		problems = append(problems, fmt.Sprintf("%d bad requests were accepted", r.Bad.Accepted))
	}
	if r.Platform != nil {
		problems = append(problems, r.Platform.problems()...)
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrFailed, strings.Join(problems, "; "))
}

// WriteText writes a summary for people.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "simulated %d transfers (%d re-runs) from %d Connect tenants and %d Forge installations against %s (seed %d)\n",
		r.Transfers, r.Reruns, r.ConnectTenants, r.ForgeInstallations, r.Target, r.Seed)
	fmt.Fprintf(&b, "good events:  %d distinct, %d sent, %d acknowledged (%d reported duplicate), %d retries, %d refused, %d never acknowledged\n",
		r.Events, r.Sent, r.Acknowledged, r.Duplicates, r.Retries, r.Failed, r.Unacknowledged)
	fmt.Fprintf(&b, "bad requests: %d sent, %d refused as expected, %d refused with another 4xx, %d accepted",
		r.Bad.Sent, r.Bad.Refused, r.Bad.RefusedOther, r.Bad.Accepted)
	if len(r.Bad.ByKind) > 0 {
		var kinds []string
		for _, k := range BadKinds {
			if m, ok := r.Bad.ByKind[k]; ok {
				kinds = append(kinds, fmt.Sprintf("%s %s", k, statusList(m)))
			}
		}
		fmt.Fprintf(&b, "\n              (%s)", strings.Join(kinds, ", "))
	}
	b.WriteByte('\n')
	fmt.Fprintf(&b, "throughput:   %.0f events/s acknowledged, %.0f requests/s, over %s\n",
		r.EventsPerSecond, r.RequestsPerSecond, r.Duration.Round(time.Millisecond))
	fmt.Fprintf(&b, "latency:      p50 %s  p90 %s  p99 %s  max %s\n",
		roundDur(r.Latency.P50), roundDur(r.Latency.P90), roundDur(r.Latency.P99), roundDur(r.Latency.Max))
	fmt.Fprintf(&b, "answers:      %s\n", statusList(r.Statuses))
	if r.Platform != nil {
		r.Platform.writeText(&b)
	}
	if r.SeqMismatches > 0 {
		fmt.Fprintf(&b, "warning:      %d acknowledgements named another stream sequence than the event's first\n", r.SeqMismatches)
	}
	for i, f := range r.Failures {
		if i == 10 {
			fmt.Fprintf(&b, "  … and %d more\n", len(r.Failures)-i)
			break
		}
		what := string(f.Kind)
		if f.Bad != "" {
			what = "bad " + string(f.Bad)
		}
		fmt.Fprintf(&b, "  failure: %s transfer %s id %s: %d %s %s\n", what, f.TransferID, f.ID, f.Status, f.Code, f.Message)
	}
	if err := r.Err(); err != nil {
		fmt.Fprintf(&b, "FAILED: %v\n", err)
	} else {
		b.WriteString("OK: every good event acknowledged, every bad request refused\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func statusList(m map[int]int64) string {
	codes := make([]int, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	parts := make([]string, 0, len(codes))
	for _, c := range codes {
		name := fmt.Sprint(c)
		if c == 0 {
			name = "network error"
		}
		parts = append(parts, fmt.Sprintf("%s×%d", name, m[c]))
	}
	return strings.Join(parts, " ")
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// ExpectFile is the JSON the simulate command's --expect writes: what a
// test needs to check a server after a run.
type ExpectFile struct {
	Seed      int64            `json:"seed"`
	Target    string           `json:"target"`
	Transfers []TransferExpect `json:"transfers"`
	Acked     []AckedEvent     `json:"acked"`
	Refused   []RefusedRequest `json:"refused"`
}

// WriteExpect writes r's ExpectFile as indented JSON.
func (r *Result) WriteExpect(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(ExpectFile{Seed: r.Seed, Target: r.Target, Transfers: r.Expect, Acked: r.Acked, Refused: r.Refused})
}
