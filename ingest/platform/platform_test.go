package platform_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/transferd/transferd/ingest/atlassian"
	"github.com/transferd/transferd/ingest/platform"
)

const (
	appKey = "com.example.app"
	secret = "tenant-shared-secret-0123456789abcdef"
)

// verifyConnect checks r's Connect JWT as the platform would: HS256 with
// the shared secret, iss the app key, exp, and the qsh of this request
// relative to basePath.
func verifyConnect(t *testing.T, r *http.Request, basePath string) error {
	t.Helper()
	h := r.Header.Get("Authorization")
	raw, ok := strings.CutPrefix(h, "JWT ")
	if !ok {
		return fmt.Errorf("authorization %q is not JWT", h)
	}
	var claims struct {
		jwt.RegisteredClaims
		QSH string `json:"qsh"`
	}
	_, err := jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return []byte(secret), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithIssuer(appKey))
	if err != nil {
		return err
	}
	if want := atlassian.QSH(r.Method, r.URL.EscapedPath(), r.URL.RawQuery, basePath); claims.QSH != want {
		return fmt.Errorf("qsh %s, want %s", claims.QSH, want)
	}
	return nil
}

func newClient(record *[]platform.Call, mu *sync.Mutex) *platform.Client {
	return &platform.Client{
		AppKey: appKey,
		Retry:  platform.Retry{Attempts: 4, Base: time.Millisecond, Max: 5 * time.Millisecond},
		Rate:   -1,
		Record: func(c platform.Call) {
			mu.Lock()
			*record = append(*record, c)
			mu.Unlock()
		},
	}
}

func TestReportProgressSignedOnAConfluenceSite(t *testing.T) {
	var got platform.Progress
	var verr error
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/wiki/rest/atlassian-connect/1/migration/progress/t-1" {
			http.Error(w, "wrong path "+r.URL.Path, http.StatusNotFound)
			return
		}
		verr = verifyConnect(t, r, "/wiki")
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			verr = err
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	var calls []platform.Call
	var mu sync.Mutex
	c := newClient(&calls, &mu)
	site := platform.ConnectSite{BaseURL: srv.URL + "/wiki/", Secret: []byte(secret)}
	if err := c.ReportProgress(context.Background(), site, "t-1", platform.Progress{Status: platform.InProgress, Percent: 40, Message: "half"}); err != nil {
		t.Fatal(err)
	}
	if verr != nil {
		t.Fatalf("the platform refuses the token: %v", verr)
	}
	if got != (platform.Progress{Status: "IN_PROGRESS", Percent: 40, Message: "half"}) {
		t.Fatalf("body %+v", got)
	}
	if len(calls) != 1 || calls[0].Op != "progress" || calls[0].Status != 200 || calls[0].Attempts != 1 || calls[0].TransferID != "t-1" || calls[0].Err != "" {
		t.Fatalf("recorded %+v", calls)
	}
	if err := c.ReportProgress(context.Background(), site, "t-1", platform.Progress{Status: "DONE"}); !errors.Is(err, platform.ErrInvalid) {
		t.Fatalf("a bad status: %v", err)
	}
}

// flaky answers the first n requests with status (and Retry-After when
// after is set), then 200 {}.
type flaky struct {
	n, status int
	after     string
	reply     string // the 200's body; "{}" when empty
	seen      atomic.Int32
	mu        sync.Mutex
	at        []time.Time
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.at = append(f.at, time.Now())
	f.mu.Unlock()
	if int(f.seen.Add(1)) <= f.n {
		if f.after != "" {
			w.Header().Set("Retry-After", f.after)
		}
		http.Error(w, "try later", f.status)
		return
	}
	reply := f.reply
	if reply == "" {
		reply = "{}"
	}
	io.WriteString(w, reply)
}

func TestRetriesTransientReplies(t *testing.T) {
	for _, status := range []int{500, 502, 503, 429} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			f := &flaky{n: 2, status: status}
			srv := httptest.NewServer(f)
			defer srv.Close()
			var calls []platform.Call
			var mu sync.Mutex
			c := newClient(&calls, &mu)
			err := c.ReportProgress(context.Background(), platform.ConnectSite{BaseURL: srv.URL, Secret: []byte(secret)}, "t-2", platform.Progress{Status: platform.Success})
			if err != nil {
				t.Fatal(err)
			}
			if f.seen.Load() != 3 || len(calls) != 1 || calls[0].Attempts != 3 || calls[0].Op != "settle" || calls[0].Status != 200 {
				t.Fatalf("server saw %d, recorded %+v", f.seen.Load(), calls)
			}
		})
	}
}

func TestHonoursRetryAfter(t *testing.T) {
	f := &flaky{n: 1, status: http.StatusTooManyRequests, after: "1", reply: "[]"}
	srv := httptest.NewServer(f)
	defer srv.Close()
	var calls []platform.Call
	var mu sync.Mutex
	c := newClient(&calls, &mu)
	c.Retry.Max = 10 * time.Second
	if _, err := c.AppDataList(context.Background(), platform.ConnectSite{BaseURL: srv.URL, Secret: []byte(secret)}, "t-3"); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.at) != 2 {
		t.Fatalf("%d requests", len(f.at))
	}
	if gap := f.at[1].Sub(f.at[0]); gap < 900*time.Millisecond {
		t.Fatalf("retried %v after a Retry-After of 1 s", gap)
	}
}

func TestFinalRepliesAreNotRetried(t *testing.T) {
	for _, tc := range []struct {
		status int
		is     error
	}{{403, platform.ErrSettled}, {409, platform.ErrSettled}, {400, platform.ErrRejected}, {404, platform.ErrNotFound}} {
		f := &flaky{n: 100, status: tc.status}
		srv := httptest.NewServer(f)
		var calls []platform.Call
		var mu sync.Mutex
		c := newClient(&calls, &mu)
		err := c.ReportProgress(context.Background(), platform.ConnectSite{BaseURL: srv.URL, Secret: []byte(secret)}, "t-4", platform.Progress{Status: platform.Failed, Message: "boom"})
		srv.Close()
		var se *platform.StatusError
		if !errors.Is(err, tc.is) || !errors.As(err, &se) || se.StatusCode != tc.status {
			t.Fatalf("%d: %v", tc.status, err)
		}
		if f.seen.Load() != 1 || calls[0].Attempts != 1 || calls[0].Status != tc.status || calls[0].Err == "" {
			t.Fatalf("%d: server saw %d, recorded %+v", tc.status, f.seen.Load(), calls)
		}
	}
}

func TestExhaustedAndHangingPlatform(t *testing.T) {
	f := &flaky{n: 100, status: 500}
	srv := httptest.NewServer(f)
	defer srv.Close()
	var calls []platform.Call
	var mu sync.Mutex
	c := newClient(&calls, &mu)
	err := c.ReportProgress(context.Background(), platform.ConnectSite{BaseURL: srv.URL, Secret: []byte(secret)}, "t-5", platform.Progress{Status: platform.Success})
	if !errors.Is(err, platform.ErrExhausted) || f.seen.Load() != 4 || calls[0].Attempts != 4 || calls[0].Unanswered {
		t.Fatalf("err %v, seen %d, recorded %+v", err, f.seen.Load(), calls)
	}

	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hang.Close()
	defer close(release)
	calls = nil
	c = newClient(&calls, &mu)
	c.Retry.Attempts = 2
	c.HTTP = &http.Client{Timeout: 50 * time.Millisecond}
	err = c.ReportProgress(context.Background(), platform.ConnectSite{BaseURL: hang.URL, Secret: []byte(secret)}, "t-5", platform.Progress{Status: platform.Success})
	if !errors.Is(err, platform.ErrExhausted) || len(calls) != 1 || !calls[0].Unanswered || calls[0].Status != 0 {
		t.Fatalf("err %v, recorded %+v", err, calls)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.ReportProgress(ctx, platform.ConnectSite{BaseURL: hang.URL, Secret: []byte(secret)}, "t-5", platform.Progress{Status: platform.Success}); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled context: %v", err)
	}
}

func TestForgeMessageStatus(t *testing.T) {
	const token = "forge-system-token-secret"
	var body struct {
		Status     string   `json:"status"`
		MessageIDs []string `json:"messageIds"`
	}
	var auth, path string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth, path = r.Header.Get("Authorization"), r.URL.Path
		json.NewDecoder(r.Body).Decode(&body)
	}))
	defer srv.Close()
	var calls []platform.Call
	var mu sync.Mutex
	c := newClient(&calls, &mu)
	inst := platform.ForgeInstallation{APIBaseURL: srv.URL, Token: token}
	if err := c.MessageStatus(context.Background(), inst, "t-6", platform.Success, []string{"m1", "m2"}); err != nil {
		t.Fatal(err)
	}
	if auth != "Bearer "+token || path != "/app/migration/forge/v1/message/t-6/status" || body.Status != "SUCCESS" || len(body.MessageIDs) != 2 {
		t.Fatalf("auth %q path %q body %+v", auth, path, body)
	}
	for _, call := range calls {
		if strings.Contains(fmt.Sprint(call), token) {
			t.Fatalf("the token is in the record %+v", call)
		}
	}
	if err := c.MessageStatus(context.Background(), inst, "t-6", "DONE", []string{"m1"}); !errors.Is(err, platform.ErrInvalid) {
		t.Fatalf("bad status: %v", err)
	}
	if err := c.MessageStatus(context.Background(), platform.ForgeInstallation{APIBaseURL: srv.URL}, "t-6", platform.Success, []string{"m1"}); !errors.Is(err, platform.ErrInvalid) {
		t.Fatalf("no token: %v", err)
	}
}

// TestMappingsPageThrough reads 2,500 mappings in pages as a partner would,
// following meta.lastEntity until hasNext is false.
func TestMappingsPageThrough(t *testing.T) {
	all := map[string]string{}
	var keys []string
	for i := range 2500 {
		k := fmt.Sprintf("jira.issue/%05d", i)
		all[k] = fmt.Sprint(100000 + i)
		keys = append(keys, k)
	}
	sort.Strings(keys)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := verifyConnect(t, r, ""); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		q := r.URL.Query()
		if q.Get("namespace") != "jira:issue" {
			http.Error(w, "namespace", http.StatusBadRequest)
			return
		}
		size, _ := strconv.Atoi(q.Get("pageSize"))
		i := sort.SearchStrings(keys, q.Get("lastEntity"))
		if q.Get("lastEntity") != "" {
			i++
		}
		j := min(i+size, len(keys))
		var page platform.MappingPage
		page.Items = map[string]string{}
		for _, k := range keys[i:j] {
			page.Items[k] = all[k]
		}
		page.Meta.PageSize, page.Meta.HasNext = j-i, j < len(keys)
		if j > i {
			page.Meta.LastEntity = keys[j-1]
		}
		json.NewEncoder(w).Encode(page)
	}))
	defer srv.Close()
	var calls []platform.Call
	var mu sync.Mutex
	c := newClient(&calls, &mu)
	site := platform.ConnectSite{BaseURL: srv.URL, Secret: []byte(secret)}
	got := map[string]string{}
	last := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		p, err := c.Mappings(context.Background(), site, "t-7", "jira:issue", last, 0)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range p.Items {
			got[k] = v
		}
		if !p.Meta.HasNext {
			break
		}
		last = p.Meta.LastEntity
	}
	if len(got) != len(all) || len(calls) != 3 {
		t.Fatalf("%d mappings in %d calls", len(got), len(calls))
	}
	for k, v := range all {
		if got[k] != v {
			t.Fatalf("%s: %q, want %q", k, got[k], v)
		}
	}
}

func TestAppDataURLEscapesTheKey(t *testing.T) {
	var raw string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := verifyConnect(t, r, ""); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		raw = r.URL.EscapedPath()
		io.WriteString(w, `{"url":"https://s3.example/obj?sig=1"}`)
	}))
	defer srv.Close()
	var calls []platform.Call
	var mu sync.Mutex
	c := newClient(&calls, &mu)
	u, err := c.AppDataURL(context.Background(), platform.ConnectSite{BaseURL: srv.URL, Secret: []byte(secret)}, "a/b c?d")
	if err != nil {
		t.Fatal(err)
	}
	if u != "https://s3.example/obj?sig=1" || raw != "/rest/atlassian-connect/1/migration/data/a%2Fb%20c%3Fd" {
		t.Fatalf("url %q, path %q", u, raw)
	}
}
