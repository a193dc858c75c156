package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/nats-io/nats-server/v2/server"
)

// maxPayload is the embedded server's message size limit: above the
// ingest body limit (1 MiB) plus the envelope header.
const maxPayload = 4 << 20

// embedded is a running embedded server and the lock on its store.
type embedded struct {
	*server.Server
	lock *os.File
	auth *listenAuth // nil when the server does not listen
	// recovery brings the store back after it could not be written.
	recovery *recovery
}

// startServer locks <DataDir>/nats, starts the embedded nats-server with
// JetStream storing there, and waits until it accepts clients.
func startServer(cfg Config) (_ *embedded, err error) {
	if cfg.DataDir == "" {
		return nil, errors.New("journal: no DataDir for the embedded server")
	}
	dir := filepath.Join(cfg.DataDir, "nats")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && lock != nil {
			lock.Close()
		}
	}()
	opts := &server.Options{
		ServerName: "transferd",
		JetStream:  true,
		StoreDir:   dir,
		SyncAlways: cfg.serverSyncs(),
		MaxPayload: maxPayload,
		NoSigs:     true,
		DontListen: true,
	}
	if cfg.Listen != "" {
		host, port, err := splitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("journal: listen %q: %w", cfg.Listen, err)
		}
		opts.Host, opts.Port, opts.DontListen = host, port, false
	}
	var auth *listenAuth
	if cfg.Listen != "" {
		if auth, err = configureListenAuth(opts, cfg.ListenUsers); err != nil {
			return nil, err
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("journal: embedded server: %w", err)
	}
	if auth != nil {
		if err := wireImports(s); err != nil {
			return nil, fmt.Errorf("journal: embedded server: %w", err)
		}
	}
	log := &serverLog{log: cfg.Logger, debug: cfg.Debug}
	s.SetLoggerV2(log, cfg.Debug, false, false)
	s.Start()
	if !s.ReadyForConnections(cfg.Timeout) || !s.JetStreamEnabled() {
		s.Shutdown()
		s.WaitForShutdown()
		if err := log.fatal(); err != nil {
			return nil, fmt.Errorf("journal: embedded server: %w", err)
		}
		return nil, errors.New("journal: embedded server did not start")
	}
	if auth != nil {
		// With accounts configured the global account, where the streams
		// live, has JetStream only when asked.
		if err := s.GlobalAccount().EnableJetStream(nil, nil); err != nil {
			s.Shutdown()
			s.WaitForShutdown()
			return nil, fmt.Errorf("journal: embedded server: jetstream: %w", err)
		}
	}
	rec := newRecovery(s, dir, cfg, auth != nil)
	log.setRecovery(rec)
	return &embedded{Server: s, lock: lock, auth: auth, recovery: rec}, nil
}

// splitHostPort parses host:port; port 0 asks for a free port.
func splitHostPort(hostport string) (string, int, error) {
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

// serverLog passes the embedded server's warnings and errors to an slog
// logger, and its notices and debug lines too in debug mode. It never exits
// the process: a fatal error (JetStream failing to start, say) is kept for
// Open to return.
type serverLog struct {
	log   *slog.Logger
	debug bool

	mu       sync.Mutex
	err      error
	recovery *recovery // told of write failures; nil until set
}

func (l *serverLog) setRecovery(r *recovery) {
	l.mu.Lock()
	l.recovery = r
	l.mu.Unlock()
}

// noticeFailure has the recovery check the store at once after a line
// that tells of a failed write.
func (l *serverLog) noticeFailure(format string, v []any) {
	l.mu.Lock()
	r := l.recovery
	l.mu.Unlock()
	if r == nil {
		return
	}
	if writeFailure(fmt.Sprintf(format, v...)) {
		r.suspect()
	}
}

func (l *serverLog) fatal() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

func (l *serverLog) emit(level slog.Level, format string, v []any) {
	if l.log == nil || (level < slog.LevelWarn && !l.debug) {
		return
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, v...), "component", "nats-server")
}

func (l *serverLog) Noticef(format string, v ...any) { l.emit(slog.LevelInfo, format, v) }
func (l *serverLog) Warnf(format string, v ...any) {
	l.noticeFailure(format, v)
	l.emit(slog.LevelWarn, format, v)
}

func (l *serverLog) Errorf(format string, v ...any) {
	l.noticeFailure(format, v)
	l.emit(slog.LevelError, format, v)
}

func (l *serverLog) Debugf(format string, v ...any) { l.emit(slog.LevelDebug, format, v) }
func (l *serverLog) Tracef(string, ...any)          {}

func (l *serverLog) Fatalf(format string, v ...any) {
	l.mu.Lock()
	if l.err == nil {
		l.err = fmt.Errorf(format, v...)
	}
	l.mu.Unlock()
	l.emit(slog.LevelError, format, v)
}

// shutdown stops the server, waits until it has stopped, and releases the
// store. It is idempotent.
func (e *embedded) shutdown() {
	if e.recovery != nil {
		e.recovery.close()
	}
	e.Shutdown()
	e.WaitForShutdown()
	if e.lock != nil {
		e.lock.Close()
	}
}
