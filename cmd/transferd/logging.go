package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"
)

// newFormatLogger is newLogger with a choice of format: text (key=value
// lines) or json (one JSON object a line, for log collectors).
func newFormatLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError(fmt.Sprintf("--log-level %q: want debug, info, warn or error", level))
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageError(fmt.Sprintf("--log-format %q: want text or json", format))
}

// accessLog logs one info line per request after it is answered: method,
// path (never the query, which could carry a token), status, bytes,
// duration and remote address. No header is logged.
func accessLog(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rw, r)
		log.Info("http request", "method", r.Method, "path", r.URL.Path, "status", rw.status, "bytes", rw.bytes,
			"duration", time.Since(start).Round(time.Microsecond), "remote", r.RemoteAddr)
	})
}

// statusWriter records what a handler answered. Unwrap keeps
// http.ResponseController (flushes for SSE, deadlines) working.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// localKeysNote rewrites the warning of a failed Forge key set fetch from
// a loopback URL — the key server of a local `transferd simulate`, which
// `make run` starts serve before — into a plain note at info: nothing is
// wrong, the simulator serves the keys once it runs, and serve fetches
// them again when the first Forge event names a key it lacks. Warnings
// about any other URL pass unchanged.
type localKeysNote struct {
	slog.Handler
	url string
}

func withLocalKeysNote(log *slog.Logger, jwksURL string) *slog.Logger {
	u, err := url.Parse(jwksURL)
	if err != nil || !isLoopback(u.Hostname()) {
		return log
	}
	return slog.New(localKeysNote{log.Handler(), jwksURL})
}

func (h localKeysNote) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn && r.Message == "forge key set fetch failed" {
		local := false
		r.Attrs(func(a slog.Attr) bool {
			local = local || (a.Key == "url" && a.Value.String() == h.url)
			return !local
		})
		if local {
			if !h.Enabled(ctx, slog.LevelInfo) {
				return nil
			}
			n := slog.NewRecord(r.Time, slog.LevelInfo, "forge key server not up yet: a local `transferd simulate` serves it; "+
				"serve fetches the keys when the first Forge event arrives", r.PC)
			n.AddAttrs(slog.String("url", h.url))
			return h.Handler.Handle(ctx, n)
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h localKeysNote) WithAttrs(as []slog.Attr) slog.Handler {
	return localKeysNote{h.Handler.WithAttrs(as), h.url}
}

func (h localKeysNote) WithGroup(name string) slog.Handler {
	return localKeysNote{h.Handler.WithGroup(name), h.url}
}
