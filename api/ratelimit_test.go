package api_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/trellis-iam/trellis/api"
)

// Token buckets per API key and per organization: 429 problem+json with
// Retry-After, counted in metrics; an app's checks through a key are exempt
// unless its key has a rate of its own.
func TestRateLimits(t *testing.T) {
	h := newHarness(t, docApp)
	p := h.provider()
	h.write(rel("document:d1", "owner", "user:ann"))
	acme := createOrg(h, testKey, "Acme", "acme", "")
	// four service-account keys of acme: one request each fits their key
	// buckets; acme's bucket holds three
	sa := str(p.do(201, "POST", "/v1/organizations/acme/service-accounts", map[string]any{"name": "bot"}), "id")
	var saKeys []string
	for range 4 {
		saKeys = append(saKeys, str(p.do(201, "POST", "/v1/organizations/acme/service-accounts/"+sa+"/keys", map[string]any{"permissions": []string{"access"}}), "key"))
	}
	key := func(body map[string]any) string { return str(p.do(201, "POST", "/v1/api-keys", body), "secret") }
	checkKey := key(map[string]any{"name": "app", "scopes": []string{"check"}})
	meteredCheckKey := key(map[string]any{"name": "metered", "scopes": []string{"check"}, "rateLimit": map[string]any{"perSecond": 0.001, "burst": 1}})
	readKey := key(map[string]any{"name": "reader", "scopes": []string{"relationships:read"}})

	srv := api.New(api.Deps{Engine: h.graph, Directory: h.dir, AdminKey: testKey,
		RateLimits: api.RateLimits{Key: api.Bucket{Rate: 0.001, Burst: 1}, Org: api.Bucket{Rate: 0.001, Burst: 3}}})
	as := func(secret, method, path, body string) (int, string, map[string]any) {
		rec := serveDirect(t, srv, method, path, body, map[string]string{"Authorization": "Bearer " + secret})
		var out map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &out)
		return rec.Code, rec.Header().Get("Retry-After"), out
	}
	check := `{"resource":"document:d1","permission":"view","subject":"user:ann"}`
	readBody := `{"filter":{"resourceType":"document"}}`
	wantLimited := func(what string, code int, retry string, out map[string]any, scope string) {
		t.Helper()
		n, err := strconv.Atoi(retry)
		if code != 429 || err != nil || n < 1 || out["code"] != "rate_limited" || !strings.Contains(str(out, "detail"), scope) {
			t.Errorf("%s: %d Retry-After %q %v, want 429 rate_limited by %s with Retry-After >= 1", what, code, retry, out, scope)
		}
	}

	// an app's checks: exempt (the default key bucket holds one request)
	for i := range 5 {
		if code, _, out := as(checkKey, "POST", "/v1/check", check); code != 200 {
			t.Fatalf("check %d through an unmetered check key: %d %v", i, code, out)
		}
	}
	// unless its key has a rate of its own
	if code, _, _ := as(meteredCheckKey, "POST", "/v1/check", check); code != 200 {
		t.Fatalf("first metered check: %d", code)
	}
	code, retry, out := as(meteredCheckKey, "POST", "/v1/check", check)
	wantLimited("second metered check", code, retry, out, "key")
	// other routes through a key: the default key bucket
	if code, _, _ := as(readKey, "POST", "/v1/relationships/read", readBody); code != 200 {
		t.Fatalf("first relationship read: %d", code)
	}
	code, retry, out = as(readKey, "POST", "/v1/relationships/read", readBody)
	wantLimited("second relationship read", code, retry, out, "key")
	// one organization's callers share its bucket (3)
	for i := range 3 {
		if code, _, out := as(saKeys[i], "GET", "/v1/organizations/"+acme, ""); code != 200 {
			t.Fatalf("org read %d: %d %v", i, code, out)
		}
	}
	code, retry, out = as(saKeys[3], "GET", "/v1/organizations/"+acme, "")
	wantLimited("fourth org read", code, retry, out, "organization")
	// the master key is not throttled
	for range 5 {
		if code, _, _ := as(testKey, "POST", "/v1/relationships/read", readBody); code != 200 {
			t.Fatalf("admin key throttled: %d", code)
		}
	}
	// counted
	metrics := serveDirect(t, srv, "GET", "/metrics", "", nil).Body.String()
	for _, want := range []string{`trellis_http_rate_limited_total{scope="key"} 2`, `trellis_http_rate_limited_total{scope="organization"} 1`,
		`trellis_http_requests_total{code="429",method="POST",route="/v1/relationships/read"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
