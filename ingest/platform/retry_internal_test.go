package platform

import (
	"net/http"
	"testing"
	"time"
)

func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"7":                             7 * time.Second,
		"-3":                            0,
		"soon":                          0,
		"99999999":                      86400 * time.Second,
		"Thu, 03 Dec 2026 12:00:30 GMT": 30 * time.Second,
		"Thu, 03 Dec 2026 11:00:00 GMT": 0,
	} {
		h := http.Header{}
		if v != "" {
			h.Set("Retry-After", v)
		}
		if got := retryAfter(h, now); got != want {
			t.Errorf("Retry-After %q: %v, want %v", v, got, want)
		}
	}
}

func TestBackoffIsCappedAndJittered(t *testing.T) {
	r := Retry{Base: 100 * time.Millisecond, Max: time.Second}
	for n := 1; n < 70; n++ {
		d := r.backoff(n, 0)
		ceil := min(r.Base<<min(n-1, 20), r.Max)
		if d <= 0 || d > ceil+time.Millisecond {
			t.Fatalf("attempt %d: %v outside (0, %v]", n, d, ceil)
		}
	}
	if d := r.backoff(1, time.Hour); d != time.Second {
		t.Fatalf("a Retry-After of an hour gives %v, want the cap", d)
	}
	if d := r.backoff(1, 300*time.Millisecond); d != 300*time.Millisecond {
		t.Fatalf("Retry-After 300ms gives %v", d)
	}
}

func TestLimiterPerHost(t *testing.T) {
	l := &limiter{rate: 2, burst: 3}
	now := time.Unix(1000, 0)
	for i := range 3 {
		if d := l.reserve("a", now); d != 0 {
			t.Fatalf("burst token %d waits %v", i, d)
		}
	}
	if d := l.reserve("a", now); d != 500*time.Millisecond {
		t.Fatalf("beyond the burst: %v, want 500ms", d)
	}
	if d := l.reserve("b", now); d != 0 {
		t.Fatalf("another host waits %v", d)
	}
	if d := l.reserve("a", now.Add(500*time.Millisecond)); d != 0 {
		t.Fatalf("after refilling one token: %v", d)
	}
}
