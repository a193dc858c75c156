package api

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// The dashboard's sign-in. POST /login checks the API token and opens a
// session: a random 32-byte id, kept by the server (only its SHA-256, with
// an expiry) and given to the browser as the cookie. The cookie never
// holds the token; POST /logout deletes the session, so a copied cookie
// stops working at once; sessions also end at cookieMaxAge, and when the
// server restarts (they are in memory).

// maxSessions bounds the open sessions; beyond it the oldest is dropped.
const maxSessions = 10000

type sessions struct {
	mu  sync.Mutex
	m   map[[sha256.Size]byte]time.Time // id digest → expiry
	now func() time.Time
}

func newSessions() *sessions {
	return &sessions{m: make(map[[sha256.Size]byte]time.Time), now: time.Now}
}

// open starts a session and returns its id, the cookie's value.
func (ss *sessions) open() string {
	var id [32]byte
	rand.Read(id[:]) // never fails (crypto/rand)
	v := base64.RawURLEncoding.EncodeToString(id[:])
	now := ss.now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.m) >= maxSessions {
		var oldest [sha256.Size]byte
		first := true
		for k, exp := range ss.m {
			if !exp.After(now) {
				delete(ss.m, k)
				continue
			}
			if first || exp.Before(ss.m[oldest]) {
				oldest, first = k, false
			}
		}
		if len(ss.m) >= maxSessions {
			delete(ss.m, oldest)
		}
	}
	ss.m[sha256.Sum256([]byte(v))] = now.Add(cookieMaxAge)
	return v
}

// valid reports whether id is an open session. The map is keyed by the
// id's digest, so the lookup reveals nothing about other ids' bytes.
func (ss *sessions) valid(id string) bool {
	if id == "" {
		return false
	}
	k := sha256.Sum256([]byte(id))
	ss.mu.Lock()
	defer ss.mu.Unlock()
	exp, ok := ss.m[k]
	if ok && !exp.After(ss.now()) {
		delete(ss.m, k)
		return false
	}
	return ok
}

// close ends session id.
func (ss *sessions) close(id string) {
	k := sha256.Sum256([]byte(id))
	ss.mu.Lock()
	delete(ss.m, k)
	ss.mu.Unlock()
}

// Sign-in attempts allowed per client address: a burst of loginBurst,
// then one every loginEvery.
const (
	loginBurst     = 20
	loginEvery     = 3 * time.Second
	maxLoginIPs    = 4096
	failedLogBurst = 5
	failedLogEvery = 10 * time.Second
)

// loginLimiter rate-limits POST /login per remote address (the TCP peer:
// X-Forwarded-For is anyone's to write), with a bounded map, and the
// warnings about failed sign-ins.
type loginLimiter struct {
	mu         sync.Mutex
	byIP       map[string]*rate.Limiter
	logs       *rate.Limiter
	suppressed int
}

func newLoginLimiter() *loginLimiter {
	return &loginLimiter{byIP: make(map[string]*rate.Limiter), logs: rate.NewLimiter(rate.Every(failedLogEvery), failedLogBurst)}
}

// allow takes one attempt for r's client; when none is left it returns
// false and how long until the next.
func (l *loginLimiter) allow(r *http.Request) (bool, time.Duration) {
	ip := r.RemoteAddr
	if h, _, err := net.SplitHostPort(ip); err == nil {
		ip = h
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.byIP[ip]
	if lim == nil {
		if len(l.byIP) >= maxLoginIPs {
			// Forget clients with a full allowance first, else any one.
			for k, v := range l.byIP {
				if v.TokensAt(now) >= loginBurst {
					delete(l.byIP, k)
				}
			}
			for k := range l.byIP {
				if len(l.byIP) < maxLoginIPs {
					break
				}
				delete(l.byIP, k)
			}
		}
		lim = rate.NewLimiter(rate.Every(loginEvery), loginBurst)
		l.byIP[ip] = lim
	}
	res := lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// failed logs a failed sign-in, at most failedLogBurst per failedLogEvery;
// the next line logged says how many were not.
func (l *loginLimiter) failed(log *slog.Logger, r *http.Request, msg string) {
	l.mu.Lock()
	ok := l.logs.Allow()
	n := l.suppressed
	if ok {
		l.suppressed = 0
	} else {
		l.suppressed++
	}
	l.mu.Unlock()
	if ok {
		log.Warn(msg, "remote", r.RemoteAddr, "suppressedSinceLast", n)
	}
}

// retryAfter is d in whole seconds, at least 1, for Retry-After.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(int(max(1, math.Ceil(d.Seconds()))))
}
