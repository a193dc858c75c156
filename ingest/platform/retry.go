package platform

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Retry bounds how a request is repeated. The zero value uses the defaults.
type Retry struct {
	// Attempts is the most requests sent for one call; 0 means 8.
	Attempts int
	// Base is the first backoff; 0 means 500 ms. Each retry doubles it.
	Base time.Duration
	// Max caps one backoff and one Retry-After; 0 means 1 minute.
	Max time.Duration
}

func (r Retry) attempts() int {
	if r.Attempts <= 0 {
		return 8
	}
	return r.Attempts
}

// backoff is the wait before attempt n+1 (n ≥ 1): full jitter over an
// exponential ceiling, or the platform's Retry-After when it gave one.
func (r Retry) backoff(n int, retryAfter time.Duration) time.Duration {
	base, max := r.Base, r.Max
	if base <= 0 {
		base = 500 * time.Millisecond
	}
	if max <= 0 {
		max = time.Minute
	}
	if retryAfter > 0 {
		return min(retryAfter, max)
	}
	ceil := base << min(n-1, 20)
	if ceil <= 0 || ceil > max {
		ceil = max
	}
	return time.Duration(rand.Int64N(int64(ceil))) + time.Millisecond
}

// retryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(min(s, 86400)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// limiter is a token bucket per host.
type limiter struct {
	rate  float64 // tokens per second
	burst float64

	mu    sync.Mutex
	hosts map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxHosts bounds the buckets kept; beyond it idle ones are dropped.
const maxHosts = 10000

// wait takes a token for host, waiting for one within ctx.
func (l *limiter) wait(ctx context.Context, host string) error {
	if l == nil || l.rate <= 0 {
		return nil
	}
	for {
		d := l.reserve(host, time.Now())
		if d == 0 {
			return nil
		}
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
}

// reserve takes a token and returns 0, or returns how long until one is due.
func (l *limiter) reserve(host string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.hosts == nil {
		l.hosts = make(map[string]*bucket)
	}
	b := l.hosts[host]
	if b == nil {
		if len(l.hosts) >= maxHosts {
			for h, o := range l.hosts {
				if now.Sub(o.last) > time.Duration(l.burst/l.rate*float64(time.Second)) {
					delete(l.hosts, h)
				}
			}
		}
		b = &bucket{tokens: l.burst, last: now}
		l.hosts[host] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}
