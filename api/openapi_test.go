package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"mime"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/api"
	"github.com/transferd/transferd/api/apitest"
	"github.com/transferd/transferd/engine"
	"github.com/transferd/transferd/ingest"
	"github.com/transferd/transferd/ingest/atlassian"
)

// oasDoc decodes api.OpenAPI().
func oasDoc(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(api.OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	return doc
}

// oasIngest returns an ingest handler over env's journal, with the Connect
// tenant "tenant-a" (secret oasSecret) installed and unsigned first
// installs allowed, so that every ingest route can answer 200.
func oasIngest(t *testing.T, env *apitest.Env) *ingest.Handler {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	reg, err := ingest.OpenRegistry(ctx, env.Journal.Tenants())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	if err := reg.Put(ctx, ingest.Tenant{ClientKey: "tenant-a", SharedSecret: oasSecret}); err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(ctx, ingest.Config{BaseURL: "https://app.example.com", AllowUnsignedInstall: true}, env.Journal, reg)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

const oasSecret = "openapi-test-secret-0123456789"

// oasOperation is a route as "METHOD /path" with OpenAPI's path template.
func oasOperation(pattern string) (string, error) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok || method == "" || !strings.HasPrefix(path, "/") {
		return "", fmt.Errorf("pattern %q has no method or no path", pattern)
	}
	// Go's {$} anchors "/" to itself; OpenAPI paths are exact anyway.
	path = strings.TrimSuffix(path, "{$}")
	// {name...} matches the rest of the path: a plain {name} in OpenAPI.
	path = regexp.MustCompile(`\{([A-Za-z0-9_]+)\.\.\.\}`).ReplaceAllString(path, "{$1}")
	return method + " " + path, nil
}

// TestOpenAPIMatchesRoutes fails when a route is served and not in
// api/openapi.json, or documented and not served: the query API's routes
// (api.Server.Routes, which include health, readiness, metrics, the
// dashboard's / and /openapi.json) and the ingest routes
// (ingest.Handler.Routes, the Connect webhook at its default path).
func TestOpenAPIMatchesRoutes(t *testing.T) {
	env := apitest.New(t, apitest.Options{})
	in := oasIngest(t, env)
	served := map[string]bool{}
	for _, p := range slices.Concat(env.API.Routes(), in.Routes()) {
		op, err := oasOperation(p)
		if err != nil {
			t.Fatal(err)
		}
		served[op] = true
	}
	if !served["POST "+ingest.DefaultConnectPath] {
		t.Fatalf("the ingest handler does not serve the default Connect path: %v", in.Routes())
	}

	documented := map[string]bool{}
	for path, item := range oasDoc(t)["paths"].(map[string]any) {
		for method := range item.(map[string]any) {
			switch method {
			case "get", "put", "post", "delete", "options", "head", "patch", "trace":
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	for _, op := range oasSorted(served) {
		if !documented[op] {
			t.Errorf("%s is served but not in api/openapi.json", op)
		}
	}
	for _, op := range oasSorted(documented) {
		if !served[op] {
			t.Errorf("%s is in api/openapi.json but not served", op)
		}
	}
}

func oasSorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestOpenAPIDocument checks the document itself: OpenAPI 3.1.0, every
// $ref resolves, every operation has a unique operationId, responses, a
// security requirement that names declared schemes (the API token on every
// /v1 route), and declares each of its path's {parameters}.
func TestOpenAPIDocument(t *testing.T) {
	doc := oasDoc(t)
	if doc["openapi"] != "3.1.0" {
		t.Errorf(`"openapi" = %v, want "3.1.0"`, doc["openapi"])
	}
	if info, _ := doc["info"].(map[string]any); info["title"] == nil || info["version"] == nil {
		t.Errorf("info needs title and version: %v", info)
	}
	refs := 0
	oasWalk(doc, "#", func(at string, ref string) {
		refs++
		if _, err := oasResolve(doc, ref); err != nil {
			t.Errorf("%s: $ref %q: %v", at, ref, err)
		}
	})
	if refs < 20 {
		t.Errorf("only %d $refs: the walk is broken", refs)
	}

	schemes := doc["components"].(map[string]any)["securitySchemes"].(map[string]any)
	if _, ok := schemes["dashboardCookie"].(map[string]any); ok && schemes["dashboardCookie"].(map[string]any)["name"] != api.CookieName {
		t.Errorf("dashboardCookie names %v, the dashboard sets %q", schemes["dashboardCookie"].(map[string]any)["name"], api.CookieName)
	}
	ids := map[string]string{}
	for path, item := range doc["paths"].(map[string]any) {
		for method, raw := range item.(map[string]any) {
			op := raw.(map[string]any)
			where := strings.ToUpper(method) + " " + path
			id, _ := op["operationId"].(string)
			if id == "" {
				t.Errorf("%s has no operationId", where)
			} else if prev, dup := ids[id]; dup {
				t.Errorf("%s and %s share operationId %q", prev, where, id)
			}
			ids[id] = where
			if r, _ := op["responses"].(map[string]any); r["200"] == nil {
				t.Errorf("%s documents no 200 response", where)
			}
			sec, ok := op["security"].([]any)
			if !ok {
				t.Errorf("%s has no security requirement (use [] for none)", where)
			}
			var names []string
			for _, req := range sec {
				for name := range req.(map[string]any) {
					names = append(names, name)
					if schemes[name] == nil {
						t.Errorf("%s uses undeclared security scheme %q", where, name)
					}
				}
			}
			if strings.HasPrefix(path, "/v1/") != slices.Contains(names, "apiToken") {
				t.Errorf("%s: security %v; the API token is needed exactly on /v1 routes", where, names)
			}
			declared := map[string]bool{}
			params, _ := op["parameters"].([]any)
			for _, p := range params {
				if r := oasRefOr(p); r != "" {
					var err error
					if p, err = oasResolve(doc, r); err != nil {
						continue // reported by the $ref walk
					}
				}
				pm := p.(map[string]any)
				if pm["in"] == "path" {
					declared[pm["name"].(string)] = pm["required"] == true
				}
			}
			for _, m := range regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(path, -1) {
				if !declared[m[1]] {
					t.Errorf("%s: path parameter %q not declared as required", where, m[1])
				}
				delete(declared, m[1])
			}
			for name := range declared {
				t.Errorf("%s: path parameter %q is not in the path", where, name)
			}
		}
	}
}

// oasRefOr returns the $ref of v, or "" when v is inline.
func oasRefOr(v any) string {
	if m, ok := v.(map[string]any); ok {
		if r, ok := m["$ref"].(string); ok {
			return r
		}
	}
	return ""
}

// oasWalk calls fn with every $ref in v and where it is.
func oasWalk(v any, at string, fn func(at, ref string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if r, ok := x.(string); ok && k == "$ref" {
				fn(at, r)
				continue
			}
			oasWalk(x, at+"/"+k, fn)
		}
	case []any:
		for i, x := range v {
			oasWalk(x, at+"/"+strconv.Itoa(i), fn)
		}
	}
}

// oasResolve follows a local JSON pointer ("#/components/…"); an empty ref
// is not followed (an inline object is returned by the caller's lookup).
func oasResolve(doc map[string]any, ref string) (any, error) {
	if ref == "" {
		return nil, fmt.Errorf("no $ref")
	}
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, fmt.Errorf("not a local reference")
	}
	var cur any = doc
	for _, tok := range strings.Split(rest, "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%q is not an object", tok)
		}
		if cur, ok = m[tok]; !ok {
			return nil, fmt.Errorf("no %q", tok)
		}
	}
	if r := oasRefOr(cur); r != "" {
		return oasResolve(doc, r)
	}
	return cur, nil
}

// oasDeref returns v, or what its $ref points at.
func oasDeref(t *testing.T, doc map[string]any, v any) map[string]any {
	t.Helper()
	if r := oasRefOr(v); r != "" {
		x, err := oasResolve(doc, r)
		if err != nil {
			t.Fatalf("$ref %q: %v", r, err)
		}
		v = x
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%v is not an object", v)
	}
	return m
}

// TestOpenAPIServed fetches the document without a token.
func TestOpenAPIServed(t *testing.T) {
	env := apitest.New(t, apitest.Options{})
	resp, err := http.Get(env.URL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /openapi.json = %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if !bytes.Equal(body, api.OpenAPI()) || !json.Valid(body) {
		t.Error("the body is not the embedded document")
	}
	req, _ := http.NewRequest("GET", env.URL+"/openapi.json", nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("ETag") == "" || resp.StatusCode != http.StatusNotModified {
		t.Errorf("conditional GET = %d (ETag %q), want 304", resp.StatusCode, resp.Header.Get("ETag"))
	}
	if status, body := do(t, env, "POST", "/openapi.json", ""); status != http.StatusMethodNotAllowed {
		t.Errorf("POST /openapi.json = %d %s", status, body)
	}
}

// TestOpenAPIDescribesReplies sends requests that reach every route, with
// successes and errors, and checks each reply against the document: its
// status is documented for the operation, with its content type, and the
// body validates against the schema, which must also declare every
// member the body has (unless it allows additional ones explicitly). So
// the schemas are the exact shapes, not approximations.
func TestOpenAPIDescribesReplies(t *testing.T) {
	doc := oasDoc(t)
	env := apitest.New(t, apitest.Options{})
	base := apitest.Epoch
	env.Append(
		apitest.Event(t, apitest.Spec{TransferID: "t-orig", MessageID: "m-1", ReceivedAt: base}),
		apitest.Event(t, apitest.Spec{TransferID: "t-orig", MessageID: "m-2", Kind: engine.KindAppDataUploaded, ReceivedAt: base.Add(time.Second)}),
		apitest.Event(t, apitest.Spec{TransferID: "t-orig", MessageID: "m-3", Kind: engine.KindListenerErrored, ReceivedAt: base.Add(2 * time.Second)}),
		apitest.Event(t, apitest.Spec{TransferID: "t-orig", MessageID: "m-4", Kind: engine.KindCancellationRequested, ReceivedAt: base.Add(3 * time.Second)}),
		apitest.Event(t, apitest.Spec{TransferID: "t-orig", MessageID: "m-5", Kind: engine.KindUnknown, ReceivedAt: base.Add(4 * time.Second)}),
		apitest.Event(t, apitest.Spec{TransferID: "t-rerun", MessageID: "m-6", Original: "t-orig", ReceivedAt: base.Add(5 * time.Second)}),
		apitest.Event(t, apitest.Spec{TransferID: "t-rerun", MessageID: "m-7", Kind: engine.KindTransferSettled, Original: "t-orig", ReceivedAt: base.Add(6 * time.Second)}),
	)
	env.Append(apitest.Event(t, apitest.Spec{TransferID: "t-orig", MessageID: "m-1", ReceivedAt: base})) // a duplicate
	env.Sync()

	check := func(t *testing.T, tmpl, method string, resp *http.Response, body []byte) {
		t.Helper()
		item, _ := doc["paths"].(map[string]any)[tmpl].(map[string]any)
		op, ok := item[strings.ToLower(method)].(map[string]any)
		if !ok {
			t.Fatalf("%s %s is not documented", method, tmpl)
		}
		r, ok := op["responses"].(map[string]any)[strconv.Itoa(resp.StatusCode)]
		if !ok {
			t.Fatalf("%s %s answered %d, not documented: %s", method, tmpl, resp.StatusCode, body)
		}
		rm := oasDeref(t, doc, r)
		headers, _ := rm["headers"].(map[string]any)
		for name := range headers {
			if resp.Header.Get(name) == "" {
				t.Errorf("%s %s %d: documented header %s missing", method, tmpl, resp.StatusCode, name)
			}
		}
		mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		media, ok := rm["content"].(map[string]any)[mt].(map[string]any)
		if !ok {
			t.Fatalf("%s %s %d: content type %q not documented", method, tmpl, resp.StatusCode, mt)
		}
		if mt != "application/json" {
			return
		}
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("%s %s %d: %v in %s", method, tmpl, resp.StatusCode, err, body)
		}
		for _, e := range (&oasValidator{doc: doc}).validate(media["schema"], v, "$") {
			t.Errorf("%s %s %d: %s\n%s", method, tmpl, resp.StatusCode, e, body)
		}
	}
	send := func(t *testing.T, url, method, tmpl string, hdr http.Header, body []byte) (int, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, url, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b := readAll(t, resp)
		check(t, tmpl, method, resp, b)
		return resp.StatusCode, b
	}
	bearer := http.Header{"Authorization": {"Bearer " + apitest.Token}}

	for _, tc := range []struct {
		path, tmpl string
		hdr        http.Header
		want       int
	}{
		{"/v1/transfers", "/v1/transfers", bearer, 200},
		{"/v1/transfers?limit=1&needsAction=true", "/v1/transfers", bearer, 200},
		{"/v1/transfers?bogus=1", "/v1/transfers", bearer, 400},
		{"/v1/transfers", "/v1/transfers", nil, 401},
		{"/v1/transfers/t-orig", "/v1/transfers/{id}", bearer, 200},
		{"/v1/transfers/t-rerun", "/v1/transfers/{id}", bearer, 200},
		{"/v1/transfers/t-orig?at=2", "/v1/transfers/{id}", bearer, 200},
		{"/v1/transfers/nope", "/v1/transfers/{id}", bearer, 404},
		{"/v1/transfers/bad%20id", "/v1/transfers/{id}", bearer, 400},
		{"/v1/transfers/t-orig/events", "/v1/transfers/{id}/events", bearer, 200},
		{"/v1/transfers/nope/events", "/v1/transfers/{id}/events", bearer, 404},
		{"/v1/transfers/t-rerun/lineage", "/v1/transfers/{id}/lineage", bearer, 200},
		{"/v1/migrations/mig-1", "/v1/migrations/{migrationId}", bearer, 200},
		{"/v1/migrations/nope", "/v1/migrations/{migrationId}", bearer, 404},
		{"/v1/stream?type=nope", "/v1/stream", bearer, 400},
		{"/healthz", "/healthz", nil, 200},
		{"/readyz", "/readyz", nil, 200},
		{"/metrics", "/metrics", nil, 200},
		{"/", "/", nil, 200},
		{"/openapi.json", "/openapi.json", nil, 200},
	} {
		t.Run("GET "+tc.path, func(t *testing.T) {
			if status, body := send(t, env.URL+tc.path, "GET", tc.tmpl, tc.hdr, nil); status != tc.want {
				t.Errorf("status %d, want %d: %s", status, tc.want, body)
			}
		})
	}

	t.Run("GET /v1/stream", func(t *testing.T) {
		for _, feed := range []struct{ query, schema string }{{"type=events&from=1", "StreamEnvelope"}, {"type=transfers&from=1", "Transfer"}} {
			data := oasFirstSSEData(t, env.URL+"/v1/stream?"+feed.query, check)
			var v any
			if err := json.Unmarshal(data, &v); err != nil {
				t.Fatalf("%s: data %s: %v", feed.query, data, err)
			}
			for _, e := range (&oasValidator{doc: doc}).validate(map[string]any{"$ref": "#/components/schemas/" + feed.schema}, v, "$") {
				t.Errorf("%s: %s\n%s", feed.query, e, data)
			}
		}
	})

	in := oasIngest(t, env)
	srv := httptest.NewServer(in)
	t.Cleanup(srv.Close)
	signed := func(path, iss, secret string) http.Header {
		tok, err := atlassian.SignConnect("POST", path, "", iss, []byte(secret), time.Minute, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return http.Header{"Authorization": {"JWT " + tok}, "Content-Type": {"application/json"}}
	}
	event := []byte(`{"eventType":"listener-triggered","transferId":"t-ingest","messageId":"m-ingest","migrationDetails":{"migrationId":"mig-2","jiraClientKey":"tenant-a","confluenceClientKey":"unknown"}}`)
	plain := http.Header{"Content-Type": {"application/json"}}
	install := []byte(`{"key":"com.example.app","clientKey":"tenant-new","sharedSecret":"new-secret-0123456789","baseUrl":"https://new.atlassian.net/wiki","productType":"confluence","eventType":"installed"}`)
	cp := ingest.DefaultConnectPath
	for _, tc := range []struct {
		name, path string
		hdr        http.Header
		body       []byte
		want       int
	}{
		{"event", cp, signed(cp, "tenant-a", oasSecret), event, 200},
		{"duplicate", cp, signed(cp, "tenant-a", oasSecret), event, 200},
		{"invalid payload", cp, signed(cp, "tenant-a", oasSecret), []byte(`{"eventType":"listener-triggered"}`), 400},
		{"unsigned", cp, plain, event, 401},
		{"wrong secret", cp, signed(cp, "tenant-a", "not-the-secret"), event, 401},
		{"not JSON", cp, http.Header{"Authorization": signed(cp, "tenant-a", oasSecret)["Authorization"], "Content-Type": {"text/plain"}}, event, 415},
		{"other tenant's migration", cp, signed(cp, "tenant-a", oasSecret),
			[]byte(`{"eventType":"listener-triggered","transferId":"t-x","migrationDetails":{"jiraClientKey":"tenant-b"}}`), 403},
		{"too large", cp, signed(cp, "tenant-a", oasSecret), bytes.Repeat([]byte(" "), 2<<20), 413},
		{"installed", "/connect/installed", plain, install, 200},
		{"installed without secret", "/connect/installed", plain, []byte(`{"clientKey":"tenant-x"}`), 400},
		{"uninstalled", "/connect/uninstalled", signed("/connect/uninstalled", "tenant-new", "new-secret-0123456789"), install, 200},
		{"forge off", "/forge/migration-events", http.Header{"Authorization": {"Bearer x"}, "Content-Type": {"application/json"}}, event, 401},
	} {
		t.Run("POST "+tc.path+" "+tc.name, func(t *testing.T) {
			if status, body := send(t, srv.URL+tc.path, "POST", tc.path, tc.hdr, tc.body); status != tc.want {
				t.Errorf("status %d, want %d: %s", status, tc.want, body)
			}
		})
	}

	// Every operation documents its 405, and the reply to another method
	// is that 405, headers and body.
	for tmpl, item := range doc["paths"].(map[string]any) {
		for method := range item.(map[string]any) {
			method = strings.ToUpper(method)
			base, path := env.URL, strings.NewReplacer("{id}", "t-orig", "{migrationId}", "mig-1").Replace(tmpl)
			if strings.HasPrefix(tmpl, "/connect/") || strings.HasPrefix(tmpl, "/forge/") {
				base = srv.URL
			}
			t.Run("DELETE "+tmpl, func(t *testing.T) {
				req, _ := http.NewRequestWithContext(t.Context(), "DELETE", base+path, nil)
				req.Header.Set("Authorization", "Bearer "+apitest.Token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b := readAll(t, resp)
				if resp.StatusCode != http.StatusMethodNotAllowed {
					t.Fatalf("DELETE %s: %d, want 405: %s", path, resp.StatusCode, b)
				}
				check(t, tmpl, method, resp, b)
			})
		}
	}
}

// TestOpenAPILint checks what `npx @redocly/cli lint` checks with its
// recommended rules and this document once failed: a license and servers
// in the document, a 4XX answer on every operation, no unused component.
func TestOpenAPILint(t *testing.T) {
	doc := oasDoc(t)
	if lic, _ := doc["info"].(map[string]any)["license"].(map[string]any); lic["name"] == nil {
		t.Error("info has no license name")
	}
	if s, _ := doc["servers"].([]any); len(s) == 0 {
		t.Error("no servers")
	}
	for path, item := range doc["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			n := 0
			for code := range op.(map[string]any)["responses"].(map[string]any) {
				if strings.HasPrefix(code, "4") {
					n++
				}
			}
			if n == 0 {
				t.Errorf("%s %s has no 4XX response", method, path)
			}
		}
	}
	used := map[string]bool{}
	oasWalk(doc, "#", func(_, ref string) { used[ref] = true })
	for kind, comps := range doc["components"].(map[string]any) {
		if kind == "securitySchemes" {
			continue // used by name, not by $ref
		}
		for name := range comps.(map[string]any) {
			if ref := "#/components/" + kind + "/" + name; !used[ref] {
				t.Errorf("%s is never used", ref)
			}
		}
	}
}

// oasFirstSSEData opens a stream, checks its reply against the document
// and returns the first data line.
func oasFirstSSEData(t *testing.T, url string, check func(*testing.T, string, string, *http.Response, []byte)) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+apitest.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	check(t, "/v1/stream", "GET", resp, nil)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			return []byte(data)
		}
	}
	t.Fatalf("no data line from %s: %v", url, sc.Err())
	return nil
}

// oasValidator checks JSON values against the JSON Schema subset the
// document uses ($ref, type, enum, const, properties, required, items,
// allOf, anyOf, oneOf, pattern, minimum, maximum, minLength), and more
// strictly than JSON Schema: an object may carry only members its schema
// declares, unless the schema sets additionalProperties itself.
type oasValidator struct{ doc map[string]any }

func (v *oasValidator) validate(schema any, x any, at string) []string {
	s, ok := schema.(map[string]any)
	if !ok {
		return []string{at + ": schema is not an object"}
	}
	if ref := oasRefOr(s); ref != "" {
		target, err := oasResolve(v.doc, ref)
		if err != nil {
			return []string{at + ": " + err.Error()}
		}
		return v.validate(target, x, at)
	}
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, at+": "+fmt.Sprintf(format, args...)) }

	if all, ok := s["allOf"].([]any); ok {
		for _, sub := range all {
			errs = append(errs, v.validate(sub, x, at)...)
		}
	}
	for _, kw := range []string{"anyOf", "oneOf"} {
		subs, ok := s[kw].([]any)
		if !ok {
			continue
		}
		matched := 0
		var why []string
		for _, sub := range subs {
			if e := v.validate(sub, x, at); len(e) == 0 {
				matched++
			} else {
				why = append(why, e...)
			}
		}
		if matched == 0 || kw == "oneOf" && matched > 1 {
			fail("%s: %d of %d schemas match (%s)", kw, matched, len(subs), strings.Join(why, "; "))
		}
	}
	if t, ok := s["type"]; ok {
		var types []string
		switch t := t.(type) {
		case string:
			types = []string{t}
		case []any:
			for _, x := range t {
				types = append(types, x.(string))
			}
		}
		if !slices.ContainsFunc(types, func(t string) bool { return oasIsType(t, x) }) {
			fail("%s is not of type %v", oasShort(x), types)
			return errs
		}
	}
	if c, ok := s["const"]; ok && !reflect.DeepEqual(c, x) {
		fail("%s is not %v", oasShort(x), c)
	}
	if enum, ok := s["enum"].([]any); ok && !slices.ContainsFunc(enum, func(e any) bool { return reflect.DeepEqual(e, x) }) {
		fail("%s is not one of %v", oasShort(x), enum)
	}
	switch x := x.(type) {
	case string:
		if p, ok := s["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(x) {
			fail("%q does not match %s", x, p)
		}
		if n, ok := s["minLength"].(float64); ok && float64(len([]rune(x))) < n {
			fail("%q is shorter than %v", x, n)
		}
	case float64:
		if n, ok := s["minimum"].(float64); ok && x < n {
			fail("%v < minimum %v", x, n)
		}
		if n, ok := s["maximum"].(float64); ok && x > n {
			fail("%v > maximum %v", x, n)
		}
	case []any:
		if items, ok := s["items"]; ok {
			for i, e := range x {
				errs = append(errs, v.validate(items, e, at+"["+strconv.Itoa(i)+"]")...)
			}
		}
	case map[string]any:
		for _, r := range oasStrings(s["required"]) {
			if _, ok := x[r]; !ok {
				fail("required member %q missing", r)
			}
		}
		props, hasProps := s["properties"].(map[string]any)
		for k, val := range x {
			if p, ok := props[k]; ok {
				errs = append(errs, v.validate(p, val, at+"."+k)...)
				continue
			}
			switch ap := s["additionalProperties"].(type) {
			case bool:
				if !ap {
					fail("member %q not allowed", k)
				}
			case map[string]any:
				errs = append(errs, v.validate(ap, val, at+"."+k)...)
			default:
				if hasProps {
					fail("member %q is not in the schema", k)
				}
			}
		}
	}
	return errs
}

func oasIsType(t string, x any) bool {
	switch t {
	case "null":
		return x == nil
	case "boolean":
		_, ok := x.(bool)
		return ok
	case "string":
		_, ok := x.(string)
		return ok
	case "number":
		_, ok := x.(float64)
		return ok
	case "integer":
		f, ok := x.(float64)
		return ok && f == math.Trunc(f)
	case "array":
		_, ok := x.([]any)
		return ok
	case "object":
		_, ok := x.(map[string]any)
		return ok
	}
	return false
}

func oasStrings(v any) []string {
	var out []string
	if a, ok := v.([]any); ok {
		for _, x := range a {
			out = append(out, x.(string))
		}
	}
	return out
}

func oasShort(x any) string {
	b, _ := json.Marshal(x)
	if len(b) > 80 {
		return string(b[:80]) + "…"
	}
	return string(b)
}

// TestOpenAPIValidatorCatchesDrift shows that the strict validator refuses
// a member the schema does not declare and a missing required one, so that
// TestOpenAPIDescribesReplies would notice a changed reply.
func TestOpenAPIValidatorCatchesDrift(t *testing.T) {
	v := &oasValidator{doc: oasDoc(t)}
	accepted := map[string]any{"$ref": "#/components/schemas/Accepted"}
	for _, tc := range []struct {
		body string
		bad  bool
	}{
		{`{"accepted":true,"seq":1,"duplicate":false}`, false},
		{`{"accepted":true,"seq":1,"duplicate":false,"extra":1}`, true},
		{`{"accepted":true,"seq":1}`, true},
		{`{"accepted":false,"seq":1,"duplicate":false}`, true},
		{`{"accepted":true,"seq":1.5,"duplicate":false}`, true},
	} {
		var x any
		json.Unmarshal([]byte(tc.body), &x)
		if errs := v.validate(accepted, x, "$"); (len(errs) > 0) != tc.bad {
			t.Errorf("%s: errors %v, want bad=%v", tc.body, errs, tc.bad)
		}
	}
}
