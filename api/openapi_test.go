package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/federation"
)

// stubTokens satisfies TokenVerifier so that New mounts /.well-known/jwks.json;
// it accepts no token.
type stubTokens struct{}

func (stubTokens) Verify(string) (federation.Verified, error) {
	return federation.Verified{}, trellis.ErrUnauthenticated
}

func (stubTokens) JWKS() []byte { return []byte(`{"keys":[]}`) }

// fullServer is the API with every optional route group mounted (directory and
// token keys). Only its routes are listed and its authentication probed: no
// handler that reaches the zero directory.Service is ever invoked.
func fullServer() *echo.Echo {
	return New(Deps{Directory: &directory.Service{}, Federation: &federation.Service{}, Tokens: stubTokens{}})
}

// openAPIMethods are the operation keys of an OpenAPI path item.
var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// loadOpenAPI parses the embedded document.
func loadOpenAPI(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	return doc
}

// documentedOperations returns "METHOD /path" -> operation object.
func documentedOperations(t *testing.T, doc map[string]any) map[string]map[string]any {
	t.Helper()
	paths, ok := doc["paths"].(map[string]any)
	if !ok {
		t.Fatalf("openapi.json has no paths object")
	}
	out := map[string]map[string]any{}
	for p, item := range paths {
		pi, ok := item.(map[string]any)
		if !ok {
			t.Errorf("path %s: path item is not an object", p)
			continue
		}
		for _, m := range openAPIMethods {
			if op, ok := pi[m]; ok {
				obj, ok := op.(map[string]any)
				if !ok {
					t.Errorf("%s %s: operation is not an object", strings.ToUpper(m), p)
					continue
				}
				out[strings.ToUpper(m)+" "+p] = obj
			}
		}
	}
	return out
}

var echoParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// servedRoutes returns "METHOD /path" for every route New registers, with
// echo's ":param" written as OpenAPI's "{param}".
func servedRoutes(e *echo.Echo) map[string]bool {
	standard := map[string]bool{}
	for _, m := range openAPIMethods {
		standard[strings.ToUpper(m)] = true
	}
	handler := map[string]string{}
	for _, r := range e.Routes() {
		handler[r.Method+" "+r.Path] = r.Name
	}
	out := map[string]bool{}
	for _, r := range e.Routes() {
		if !standard[r.Method] { // echo's internal routes, e.g. echo_route_not_found
			continue
		}
		path := r.Path
		if trimmed := strings.TrimSuffix(path, "/"); trimmed != path && handler[r.Method+" "+trimmed] == r.Name {
			path = trimmed // the trailing-slash alias of a route (routes.add)
		}
		out[r.Method+" "+echoParam.ReplaceAllString(path, "{$1}")] = true
	}
	return out
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	served := servedRoutes(fullServer())
	documented := documentedOperations(t, loadOpenAPI(t))
	if len(served) == 0 {
		t.Fatal("New registered no routes")
	}
	// without a directory or token verifier New serves a subset of the document
	for r := range servedRoutes(New(Deps{})) {
		if !served[r] {
			t.Errorf("served by New(Deps{}) but not with every route group mounted: %s", r)
		}
	}
	var mismatches []string
	for r := range served {
		if _, ok := documented[r]; !ok {
			mismatches = append(mismatches, "served but not documented: "+r)
		}
	}
	for r := range documented {
		if !served[r] {
			mismatches = append(mismatches, "documented but not served: "+r)
		}
	}
	sort.Strings(mismatches)
	for _, m := range mismatches {
		t.Error(m)
	}
}

func TestOpenAPIServed(t *testing.T) {
	e := New(Deps{})
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /openapi.json: status %d, want 200", rec.Code)
	}
	if ct := rec.Header().Get(echo.HeaderContentType); !strings.HasPrefix(ct, echo.MIMEApplicationJSON) {
		t.Errorf("GET /openapi.json: Content-Type %q, want application/json", ct)
	}
	body, _ := io.ReadAll(rec.Body)
	if !bytes.Equal(body, openAPIDocument) {
		t.Errorf("GET /openapi.json: body (%d bytes) differs from the embedded document (%d bytes)", len(body), len(openAPIDocument))
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("GET /openapi.json: not JSON: %v", err)
	}
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1") {
		t.Errorf(`"openapi" is %q, want 3.1.x`, v)
	}
}

func TestOpenAPIRefsResolve(t *testing.T) {
	doc := loadOpenAPI(t)
	count := 0
	var walk func(at string, v any)
	walk = func(at string, v any) {
		switch n := v.(type) {
		case map[string]any:
			for k, c := range n {
				if k == "$ref" {
					count++
					ref, _ := c.(string)
					if _, err := resolvePointer(doc, ref); err != "" {
						t.Errorf("%s: $ref %q: %s", at, ref, err)
					}
					continue
				}
				walk(at+"/"+k, c)
			}
		case []any:
			for i, c := range n {
				walk(at+"/"+strconv.Itoa(i), c)
			}
		}
	}
	walk("#", doc)
	if count == 0 {
		t.Error("the document has no $ref at all")
	}
}

// TestOpenAPISecurityAndErrors: /v1 operations require the bearer scheme (and the
// server really answers 401 without it, or with an invalid token where it is
// optional), the others are documented as public; operationIds are unique; every
// operation has a success response; every error response is application/problem+json.
func TestOpenAPISecurityAndErrors(t *testing.T) {
	doc := loadOpenAPI(t)
	comps, _ := doc["components"].(map[string]any)
	schemes, _ := comps["securitySchemes"].(map[string]any)
	bearer, _ := schemes["bearerAuth"].(map[string]any)
	if bearer["type"] != "http" || bearer["scheme"] != "bearer" {
		t.Errorf("components.securitySchemes.bearerAuth = %v, want an http bearer scheme", bearer)
	}
	e := fullServer()
	ids := map[string]string{}
	ops := documentedOperations(t, doc)
	keys := make([]string, 0, len(ops))
	for k := range ops {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		op := ops[key]
		method, path, _ := strings.Cut(key, " ")
		id, _ := op["operationId"].(string)
		if id == "" {
			t.Errorf("%s: no operationId", key)
		} else if prev, dup := ids[id]; dup {
			t.Errorf("%s: operationId %q already used by %s", key, id, prev)
		}
		ids[id] = key

		sec, hasSec := op["security"].([]any)
		usesBearer, optional := false, false
		for _, s := range sec {
			if m, ok := s.(map[string]any); ok {
				if _, ok := m["bearerAuth"]; ok {
					usesBearer = true
				}
				if len(m) == 0 { // {}: credentials are optional
					optional = true
				}
			}
		}
		if strings.HasPrefix(path, "/v1/") {
			if !usesBearer {
				t.Errorf("%s: security does not require bearerAuth", key)
			}
			if _, ok := op["responses"].(map[string]any)["401"]; !ok {
				t.Errorf("%s: no 401 response documented", key)
			}
			// Without credentials the server must answer 401; where credentials
			// are optional (invitation accept), invalid ones must.
			req := httptest.NewRequest(method, regexp.MustCompile(`\{[^}]+\}`).ReplaceAllString(path, "x"), strings.NewReader("{}"))
			probe := "without credentials"
			if optional {
				req.Header.Set(echo.HeaderAuthorization, "Bearer not-a-valid-token")
				probe = "with an invalid bearer token"
			}
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			if rec.Code != http.StatusUnauthorized {
				t.Errorf("%s %s: status %d, want 401", key, probe, rec.Code)
			} else if ct := rec.Header().Get(echo.HeaderContentType); ct != "application/problem+json" {
				t.Errorf("%s %s: Content-Type %q, want application/problem+json", key, probe, ct)
			}
		} else if strings.HasPrefix(path, "/scim/v2/") {
			// SCIM: the organization's SCIM token, errors in the SCIM error schema
			if len(sec) != 1 || sec[0].(map[string]any)["scimBearer"] == nil {
				t.Errorf("%s: security does not require scimBearer", key)
			}
			req := httptest.NewRequest(method, regexp.MustCompile(`\{[^}]+\}`).ReplaceAllString(path, "x"), strings.NewReader("{}"))
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			if rec.Code != http.StatusUnauthorized || rec.Header().Get(echo.HeaderContentType) != "application/scim+json" {
				t.Errorf("%s without credentials: status %d, Content-Type %q, want 401 application/scim+json", key, rec.Code, rec.Header().Get(echo.HeaderContentType))
			}
		} else if !hasSec || len(sec) != 0 {
			t.Errorf("%s: public operation should declare \"security\": []", key)
		}

		responses, _ := op["responses"].(map[string]any)
		success := 0
		for code, r := range responses {
			if !strings.HasPrefix(code, "2") && (!protocolPath(path) || !strings.HasPrefix(code, "3")) {
				continue // a redirect is a protocol endpoint's success
			}
			success++
			if obj, _ := r.(map[string]any); code == "204" && obj["content"] != nil {
				t.Errorf("%s: a 204 response has no content", key)
			}
		}
		if success == 0 {
			t.Errorf("%s: no 2xx response", key)
		}
		for code, r := range responses {
			if strings.HasPrefix(code, "2") || strings.HasPrefix(code, "3") {
				continue
			}
			if protocolPath(path) {
				continue // OAuth 2.0 errors (RFC 6749 §5.2) and HTML pages, not problem documents
			}
			obj, _ := r.(map[string]any)
			if ref, ok := obj["$ref"].(string); ok {
				v, err := resolvePointer(doc, ref)
				if err != "" {
					continue // reported by TestOpenAPIRefsResolve
				}
				obj, _ = v.(map[string]any)
			}
			content, _ := obj["content"].(map[string]any)
			errType := "application/problem+json"
			if strings.HasPrefix(path, "/scim/v2/") {
				errType = "application/scim+json"
			}
			if _, ok := content[errType]; !ok || len(content) != 1 {
				t.Errorf("%s: response %s is not %s", key, code, errType)
			}
		}
	}
}

// protocolPath: the OAuth 2.0 / OpenID Connect endpoints and sign-in's
// browser pages, whose errors are the protocol's own or HTML.
func protocolPath(path string) bool {
	if path == "/sso/discover" {
		return false
	}
	for _, p := range []string{"/oauth2/", "/sso/", "/login/", "/.well-known/openid-configuration", "/portal"} {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// resolvePointer resolves a local JSON pointer ("#/components/schemas/X"); the
// error is "" when it resolves.
func resolvePointer(doc map[string]any, ref string) (any, string) {
	if !strings.HasPrefix(ref, "#/") {
		return nil, "not a local reference"
	}
	if !strings.HasPrefix(ref, "#/components/") {
		return nil, "does not point into components"
	}
	var cur any = doc
	for _, tok := range strings.Split(ref[2:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, "walks into a non-object at " + tok
		}
		if cur, ok = m[tok]; !ok {
			return nil, "no " + tok
		}
	}
	return cur, ""
}
