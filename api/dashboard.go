package api

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/transferd/transferd/api/httperr"
	"github.com/transferd/transferd/engine"
)

// The dashboard is server-rendered HTML shells (web/templates) and one
// script and style sheet (web/static), embedded: no build step, nothing
// fetched from elsewhere. The script reads the /v1 API and its streams
// with the sign-in cookie; it builds every node with textContent, never
// innerHTML, and the Content-Security-Policy allows scripts from this
// origin only, so there is no inline script and no data in markup.

//go:embed web
var web embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"asset":      assetURL,
	"joinPhases": joinWords[engine.Phase],
	"joinKinds":  joinWords[engine.Kind],
	"label":      func(p engine.Phase) string { return strings.ReplaceAll(string(p), "_", " ") },
}).ParseFS(web, "web/templates/*.html"))

// joinWords joins phases or kinds with spaces, for a data attribute.
func joinWords[S ~string](xs []S) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = string(x)
	}
	return strings.Join(s, " ")
}

// staticAsset is one file of web/static, served with a strong ETag.
type staticAsset struct {
	name  string
	body  []byte
	etag  string
	ctype string
}

var assets = loadAssets()

// assetTypes are the content types of the assets, fixed here rather than
// read from the host's MIME tables, which differ (application/javascript).
var assetTypes = map[string]string{
	".js":  "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8",
	".svg": "image/svg+xml",
	".png": "image/png",
}

func loadAssets() map[string]*staticAsset {
	m := make(map[string]*staticAsset)
	entries, err := fs.ReadDir(web, "web/static")
	if err != nil {
		panic("api: embedded web/static: " + err.Error()) // built in: cannot fail
	}
	for _, e := range entries {
		b, err := fs.ReadFile(web, "web/static/"+e.Name())
		if err != nil {
			panic("api: embedded web/static: " + err.Error())
		}
		sum := sha256.Sum256(b)
		ctype, ok := assetTypes[path.Ext(e.Name())]
		if !ok {
			panic("api: embedded web/static: no content type for " + e.Name())
		}
		m[e.Name()] = &staticAsset{name: e.Name(), body: b, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ctype: ctype}
	}
	return m
}

// assetURL is the URL of a static asset; the version parameter changes
// with its content, so a browser never keeps a stale copy.
func assetURL(name string) (string, error) {
	a, ok := assets[name]
	if !ok {
		return "", &Error{Code: httperr.CodeInternal, Message: "no asset " + name}
	}
	return "/static/" + name + "?v=" + strings.Trim(a.etag, `"`), nil
}

// The headers of every dashboard page. The policy allows this origin's
// script, styles, fetches and streams, and nothing inline or framed.
const contentSecurityPolicy = "default-src 'self'; base-uri 'none'; object-src 'none'; form-action 'self'; frame-ancestors 'none'"

func pageHeaders(h http.Header) {
	h["Content-Type"] = htmlContentType
	h["Cache-Control"] = noStore
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
}

var htmlContentType = []string{"text/html; charset=utf-8"}

// cookieMaxAge is how long a browser keeps the sign-in: the token is asked
// for once, not on every visit.
const cookieMaxAge = 7 * 24 * time.Hour

// routeDashboard serves the dashboard: GET / (in Routes) and, outside
// Routes since they are pages rather than the API, the transfer page, the
// static assets, POST /login and POST /logout.
func (s *Server) routeDashboard() {
	s.route("GET /{$}", s.handleDashboard)
	s.page("GET /transfers/{id}", s.handleTransferPage)
	s.page("GET /static/{name}", s.handleStatic)
	s.page("POST /login", s.handleLogin)
	s.page("POST /logout", s.handleLogout)
	s.page("GET /login", func(w http.ResponseWriter, r *http.Request) (int, error) {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return http.StatusSeeOther, nil
	})
	for _, p := range []string{"/login", "/logout"} {
		s.mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", "POST")
			http.Error(w, r.Method+" is not allowed on "+r.URL.Path+": sign in and out with POST", http.StatusMethodNotAllowed)
		})
	}
}

// page serves a dashboard pattern with its request metrics, like route,
// for handlers that choose their own status.
func (s *Server) page(pattern string, fn func(http.ResponseWriter, *http.Request) (int, error)) {
	rm := s.metrics.route(pattern)
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		status, err := fn(w, r)
		if err != nil {
			status = writeError(w, r, s.log, err)
		}
		rm.observe(status, time.Since(start))
	})
}

// pageData is what the templates show.
type pageData struct {
	Title string
	// View is "login", "list" or "transfer".
	View       string
	TransferID string
	// Next is where a successful sign-in goes: "/" or a transfer page.
	Next   string
	Error  string
	Phases []engine.Phase
	Kinds  []engine.Kind
	// Reconciliation tells the list page that GET /v1/reconciliation
	// answers, so it asks only then (a 404 is a console error).
	Reconciliation bool
}

// handleDashboard serves GET /: the transfers, or the sign-in form.
func (s *Server) handleDashboard(w http.ResponseWriter, r *http.Request) error {
	_, err := s.serveShell(w, r, pageData{Title: "Transfers", View: "list"})
	return err
}

// handleTransferPage serves GET /transfers/{id}: the shell of one
// transfer's page, or the sign-in form.
func (s *Server) handleTransferPage(w http.ResponseWriter, r *http.Request) (int, error) {
	id, err := transferID(r)
	if err != nil {
		return 0, err
	}
	return s.serveShell(w, r, pageData{Title: id, View: "transfer", TransferID: id})
}

// serveShell renders d for a signed-in request, else the sign-in form
// that comes back to this page.
func (s *Server) serveShell(w http.ResponseWriter, r *http.Request, d pageData) (int, error) {
	if tenant, err := s.tokens.authorize(r, s.logins); err != nil || tenant != "" {
		return s.renderLogin(w, http.StatusOK, nextOf(r.URL.EscapedPath()), "")
	}
	d.Phases, d.Kinds = engine.Phases, engine.Kinds
	d.Reconciliation = s.cfg.Reconciliation != nil
	return s.render(w, http.StatusOK, "app.html", d)
}

func (s *Server) renderLogin(w http.ResponseWriter, status int, next, msg string) (int, error) {
	if msg == "" && len(s.tokens.sums) == 0 {
		msg = "No API token is configured: start serve with --api-token or --api-token-file."
	}
	return s.render(w, status, "login.html", pageData{Title: "Sign in", View: "login", Next: next, Error: msg})
}

func (s *Server) render(w http.ResponseWriter, status int, name string, d pageData) (int, error) {
	var b bytes.Buffer
	if err := pages.ExecuteTemplate(&b, name, d); err != nil {
		return 0, err
	}
	pageHeaders(w.Header())
	w.WriteHeader(status)
	w.Write(b.Bytes())
	return status, nil
}

// nextOf returns p if a sign-in may go there (the list or a transfer
// page of this server), else "/": never another site.
func nextOf(p string) string {
	if id, ok := strings.CutPrefix(p, "/transfers/"); ok {
		if id, err := url.PathUnescape(id); err == nil && engine.ValidID(id) {
			return "/transfers/" + url.PathEscape(id)
		}
	}
	return "/"
}

// crossOrigin refuses sign-in and sign-out requests another site's page
// sends (login CSRF); the cookie's SameSite=Strict keeps them from reading
// the API.
var crossOrigin = http.NewCrossOriginProtection()

// maxLoginForm bounds the body of POST /login.
const maxLoginForm = 8 << 10

// handleLogin serves POST /login: a form with the API token. A valid token
// is checked as a bearer token is, set as the cookie, and answered with a
// redirect (303) to the page the form came from; the token is only ever
// read from the body, never from the URL.
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) (int, error) {
	if err := crossOrigin.Check(r); err != nil {
		s.log.Warn("dashboard: cross-origin sign-in refused", "origin", r.Header.Get("Origin"), "secFetchSite", r.Header.Get("Sec-Fetch-Site"))
		return s.renderLogin(w, http.StatusForbidden, "/", "This sign-in came from another site and was refused.")
	}
	if ok, wait := s.limiter.allow(r); !ok {
		s.limiter.failed(s.log, r, "dashboard: sign-in attempts over the rate limit refused")
		w.Header().Set("Retry-After", retryAfter(wait))
		return s.renderLogin(w, http.StatusTooManyRequests, "/", "Too many sign-in attempts from this address; try again in a moment.")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginForm)
	if err := r.ParseForm(); err != nil {
		return s.renderLogin(w, http.StatusBadRequest, "/", "The sign-in form could not be read.")
	}
	next := nextOf(r.PostForm.Get("next"))
	token := strings.TrimSpace(r.PostForm.Get("token"))
	switch {
	case token == "":
		return s.renderLogin(w, http.StatusUnauthorized, next, "Enter an API token.")
	case !s.tokens.valid(token):
		s.limiter.failed(s.log, r, "dashboard: sign-in with a token that is not valid")
		return s.renderLogin(w, http.StatusUnauthorized, next, "That API token is not valid.")
	}
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    s.logins.open(),
		Path:     "/",
		MaxAge:   int(cookieMaxAge / time.Second),
		HttpOnly: true,
		Secure:   secureRequest(r),
		SameSite: http.SameSiteStrictMode,
	})
	w.Header()["Cache-Control"] = noStore
	http.Redirect(w, r, next, http.StatusSeeOther)
	return http.StatusSeeOther, nil
}

// handleLogout serves POST /logout: the cookie is cleared.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) (int, error) {
	if err := crossOrigin.Check(r); err != nil {
		return s.renderLogin(w, http.StatusForbidden, "/", "This sign-out came from another site and was refused.")
	}
	if c, err := r.Cookie(CookieName); err == nil {
		s.logins.close(c.Value)
	}
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   secureRequest(r),
		SameSite: http.SameSiteStrictMode,
	})
	w.Header()["Cache-Control"] = noStore
	http.Redirect(w, r, "/", http.StatusSeeOther)
	return http.StatusSeeOther, nil
}

// secureRequest reports whether the browser reached the server over
// HTTPS, directly or through a proxy that says so: the cookie is then
// Secure.
func secureRequest(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// handleStatic serves GET /static/{name}: the embedded script, style sheet
// and icon. They hold no data and need no sign-in (the sign-in form uses
// the style sheet).
func (s *Server) handleStatic(w http.ResponseWriter, r *http.Request) (int, error) {
	a, ok := assets[r.PathValue("name")]
	if !ok {
		return 0, notFound("no asset " + r.PathValue("name"))
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("ETag", a.etag)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
	return http.StatusOK, nil
}

// SessionWriteHeader is the header, with the value "transferd", that a
// /v1 write (POST) signed in with the dashboard's cookie must carry. A
// page of another site can make a browser send the cookie with a form
// or a simple fetch, but not with a custom header: that needs a CORS
// preflight, which this server never grants. Requests with an
// Authorization header carry no ambient credential and need neither.
const SessionWriteHeader = "X-Requested-With"

var errSessionWrite = &Error{Code: httperr.CodeForbidden, Message: "a write signed in with the dashboard's cookie needs the header " + SessionWriteHeader + ": transferd and must come from this origin"}

// checkSessionWrite refuses a cookie-authenticated /v1 request with an
// unsafe method unless it carries SessionWriteHeader and passes the
// same cross-origin check as sign-in (Sec-Fetch-Site, Origin): CSRF.
func checkSessionWrite(r *http.Request) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	if r.Header.Get("Authorization") != "" {
		return nil
	}
	if r.Header.Get(SessionWriteHeader) != "transferd" || crossOrigin.Check(r) != nil {
		return errSessionWrite
	}
	return nil
}
