package ingest

import (
	"log/slog"
	"net/http"
	"sync"

	"golang.org/x/time/rate"
)

// Refusal log limits: a steady RefusalLogRate lines a second, bursts of
// RefusalLogBurst. Refusals beyond them are counted, and the next line
// says how many were left out, so a flood of bad requests cannot fill the
// disk while an operator still sees why the platform is refused.
const (
	RefusalLogRate  = 10
	RefusalLogBurst = 50
)

// refusalLog writes one warning per refused request (4xx), rate-limited.
type refusalLog struct {
	log     *slog.Logger
	limit   *rate.Limiter
	mu      sync.Mutex
	dropped int
}

func newRefusalLog(log *slog.Logger) *refusalLog {
	return &refusalLog{log: log, limit: rate.NewLimiter(RefusalLogRate, RefusalLogBurst)}
}

// refused logs r's refusal: the route, the remote address, the status,
// code and message sent, and the issuer and transfer when known. Never a
// header or the body: they carry tokens and secrets.
func (l *refusalLog) refused(r *http.Request, o *Outcome, msg string) {
	l.mu.Lock()
	if !l.limit.Allow() {
		l.dropped++
		l.mu.Unlock()
		return
	}
	dropped := l.dropped
	l.dropped = 0
	l.mu.Unlock()
	attrs := []any{"route", o.Route, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr,
		"status", o.Status, "code", o.Code, "message", msg}
	if o.Issuer != "" {
		attrs = append(attrs, "issuer", o.Issuer)
	}
	if o.TransferID != "" {
		attrs = append(attrs, "transferId", o.TransferID)
	}
	if dropped > 0 {
		attrs = append(attrs, "suppressed", dropped)
	}
	l.log.Warn("ingest refused", attrs...)
}
