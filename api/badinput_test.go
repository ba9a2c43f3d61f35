package api_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestBadInput: every malformed request is a 400 problem+json whose detail
// (and field) names the offending field, and nothing is written.
func TestBadInput(t *testing.T) {
	h := newHarness(t, docApp)
	h.write(rel("document:d1", "viewer", "user:ann"))
	longID := strings.Repeat("x", 1025)
	check := func(res, perm, sub string) map[string]any {
		return map[string]any{"resource": res, "permission": perm, "subject": sub}
	}
	bulk := make([]any, 1001)
	for i := range bulk {
		bulk[i] = check("document:d1", "view", "user:ann")
	}
	cases := []struct {
		name, path string
		body       any
		field      string
	}{
		{"resource without colon", "/v1/check", check("doc", "view", "user:ann"), "resource"},
		{"resource without id", "/v1/check", check("document:", "view", "user:ann"), "resource"},
		{"resource without type", "/v1/check", check(":x", "view", "user:ann"), "resource"},
		{"subject with empty relation", "/v1/check", check("document:d1", "view", "user:ann#"), "subject"},
		{"resource with spaces", "/v1/check", check("document:d 1", "view", "user:ann"), "resource"},
		{"over-long id", "/v1/check", check("document:"+longID, "view", "user:ann"), "resource"},
		{"wildcard resource", "/v1/check", check("document:*", "view", "user:ann"), "resource"},
		{"missing subject", "/v1/check", check("document:d1", "view", ""), "subject"},
		{"missing permission", "/v1/check", check("document:d1", "", "user:ann"), "permission"},
		{"malformed permission", "/v1/check", check("document:d1", "View!", "user:ann"), "permission"},
		{"unknown resource type", "/v1/check", check("spaceship:d1", "view", "user:ann"), "resource"},
		{"unknown permission", "/v1/check", check("document:d1", "fly", "user:ann"), "permission"},
		{"unknown subject type", "/v1/check", check("document:d1", "view", "robot:r2"), "subject"},
		{"unknown consistency mode", "/v1/check", map[string]any{"resource": "document:d1", "permission": "view", "subject": "user:ann", "consistency": map[string]any{"eventually": true}}, "consistency"},
		{"two consistency modes", "/v1/check", map[string]any{"resource": "document:d1", "permission": "view", "subject": "user:ann", "consistency": map[string]any{"minimizeLatency": true, "fullyConsistent": true}}, "consistency"},
		{"empty atLeastAsFresh", "/v1/check", map[string]any{"resource": "document:d1", "permission": "view", "subject": "user:ann", "consistency": map[string]any{"atLeastAsFresh": ""}}, "consistency.atLeastAsFresh"},
		{"resource of the wrong JSON type", "/v1/check", `{"resource": 7, "permission": "view", "subject": "user:ann"}`, "resource"},
		{"invalid JSON", "/v1/check", `{"resource": "document:d1",`, "body"},
		{"not JSON at all", "/v1/check", `resource=document:d1`, "body"},
		{"empty body", "/v1/check", ``, "body"},
		{"two JSON values", "/v1/check", `{"resource":"document:d1","permission":"view","subject":"user:ann"} {}`, "body"},
		{"context not an object", "/v1/check", `{"resource":"document:d1","permission":"view","subject":"user:ann","context":5}`, "context"},
		{"body over 1 MiB", "/v1/check", `{"resource":"document:d1","permission":"view","subject":"user:ann","context":{"pad":"` + strings.Repeat("a", 1<<20) + `"}}`, "body"},
		{"chunked body over 1 MiB", "/v1/check", io.MultiReader(strings.NewReader(`{"resource":"document:d1","permission":"view","subject":"user:ann","context":{"pad":"` + strings.Repeat("a", 1<<20) + `"}}`)), "body"},
		{"bulk over 1,000 items", "/v1/check/bulk", map[string]any{"items": bulk}, "items"},
		{"bulk item malformed", "/v1/check/bulk", map[string]any{"items": []any{check("document:d1", "view", "user:ann"), check("document", "view", "user:ann")}}, "items[1].resource"},
		{"bulk item unknown permission", "/v1/check/bulk", map[string]any{"items": []any{check("document:d1", "view", "user:ann"), check("document:d1", "fly", "user:ann")}}, "items[1].permission"},
		{"lookup without resourceType", "/v1/lookup/resources", map[string]any{"permission": "view", "subject": "user:ann"}, "resourceType"},
		{"lookup with bad pageSize", "/v1/lookup/resources", map[string]any{"resourceType": "document", "permission": "view", "subject": "user:ann", "pageSize": 0}, "pageSize"},
		{"lookup subjects without subjectType", "/v1/lookup/subjects", map[string]any{"resource": "document:d1", "permission": "view"}, "subjectType"},
		{"explain with malformed subject", "/v1/explain", check("document:d1", "view", "user"), "subject"},
		{"write with unknown relation", "/v1/relationships/write", map[string]any{"updates": []any{map[string]any{"operation": "touch", "relationship": rel("document:d2", "painter", "user:ann")}}}, "updates[0].relationship.relation"},
		{"write with unknown operation", "/v1/relationships/write", map[string]any{"updates": []any{map[string]any{"operation": "upsert", "relationship": rel("document:d2", "viewer", "user:ann")}}}, "updates[0].operation"},
		{"write with malformed subject", "/v1/relationships/write", map[string]any{"updates": []any{map[string]any{"operation": "touch", "relationship": rel("document:d2", "viewer", "user:")}}}, "updates[0].relationship.subject"},
		{"read without filter", "/v1/relationships/read", map[string]any{}, "filter"},
		{"schema validate without text", "/v1/schema/validate", map[string]any{}, "text"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, out := h.call("POST", tc.path, tc.body)
			if status != 400 {
				t.Fatalf("status %d, want 400: %v", status, out)
			}
			if out["field"] != tc.field {
				t.Errorf("field %v, want %q (detail %v)", out["field"], tc.field, out["detail"])
			}
			detail, _ := out["detail"].(string)
			if !strings.Contains(detail, tc.field) {
				t.Errorf("detail %q does not name the field %q", detail, tc.field)
			}
			for _, k := range []string{"type", "title", "status", "detail", "code"} {
				if _, ok := out[k]; !ok {
					t.Errorf("problem lacks %q: %v", k, out)
				}
			}
			if out["status"] != float64(400) || out["allowed"] != nil {
				t.Errorf("problem status %v / allowed %v", out["status"], out["allowed"])
			}
		})
	}
	// nothing above was written: only the setup relationship exists
	out := h.must(200, "POST", "/v1/relationships/read", map[string]any{"filter": map[string]any{"resourceType": "document"}})
	if n := len(out["relationships"].([]any)); n != 1 {
		t.Fatalf("bad requests wrote relationships: %d stored, want 1", n)
	}
}

// TestAuthentication: no key, a wrong key or another scheme is 401; the admin key passes.
func TestAuthentication(t *testing.T) {
	h := newHarness(t, docApp)
	body := map[string]any{"resource": "document:d1", "permission": "view", "subject": "user:ann"}
	for _, key := range []string{"", "wrong-key", testKey + "x", strings.ToUpper(testKey)} {
		status, out := h.callAs(key, "POST", "/v1/check", body)
		if status != 401 || out["code"] != "unauthenticated" {
			t.Errorf("key %q: status %d %v, want 401 unauthenticated", key, status, out)
		}
	}
	for _, header := range []string{"Basic " + testKey, testKey, "Bearer"} {
		status := h.rawAuth(header)
		if status != 401 {
			t.Errorf("Authorization %q: status %d, want 401", header, status)
		}
	}
	if status, _ := h.callAs(testKey, "POST", "/v1/check", body); status != 200 {
		t.Fatalf("admin key: status %d", status)
	}
	for _, path := range []string{"/healthz", "/readyz", "/openapi.json"} {
		if status, _ := h.callAs("", "GET", path, nil); status != 200 {
			t.Errorf("%s without a key: status %d, want 200", path, status)
		}
	}
	// an unknown path under /v1 says nothing before authentication
	for _, path := range []string{"/v1", "/v1/no-such-thing"} {
		if status, _ := h.callAs("", "GET", path, nil); status != 401 {
			t.Errorf("unknown %s without a key: status %d, want 401", path, status)
		}
	}
	// nor does an oversized body
	big := `{"resource":"document:d1","permission":"view","subject":"user:ann","context":{"pad":"` + strings.Repeat("a", 1<<20) + `"}}`
	if status, _ := h.callAs("", "POST", "/v1/check", big); status != 401 {
		t.Errorf("oversized body without a key: status %d, want 401", status)
	}
	if status, _ := h.callAs(testKey, "GET", "/v1/no-such-thing", nil); status != 404 {
		t.Errorf("unknown /v1 path with the admin key: status %d, want 404", status)
	}
}

// TestBodiesBrokenOnTheWire: a body that is malformed or breaks off below JSON
// (bad chunk framing, fewer bytes than declared, a chunked body cut short) is
// the client's 400 naming the body, never a 500.
func TestBodiesBrokenOnTheWire(t *testing.T) {
	h := newHarness(t, docApp)
	host := strings.TrimPrefix(h.url, "http://")
	head := "POST /v1/check HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: Bearer " + testKey + "\r\nContent-Type: application/json\r\n"
	body := `{"resource":"document:d1","permission":"view","subject":"user:ann"}`
	for name, raw := range map[string]string{
		"bad chunk size":            head + "Transfer-Encoding: chunked\r\n\r\nzz\r\n" + body + "\r\n0\r\n\r\n",
		"fewer bytes than declared": head + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)+50) + body,
		"chunked body cut short":    head + "Transfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n", len(body)+50) + body,
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, raw); err != nil {
				t.Fatal(err)
			}
			_ = conn.(*net.TCPConn).CloseWrite() // the body ends here
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var p map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&p)
			if resp.StatusCode != 400 || p["field"] != "body" {
				t.Fatalf("status %d %v, want 400 naming body", resp.StatusCode, p)
			}
		})
	}
}

// TestJSONErrorDetails: the detail says what is wrong with the JSON.
func TestJSONErrorDetails(t *testing.T) {
	h := newHarness(t, docApp)
	for body, want := range map[string]string{
		`{"resource":"document:d1","permission":"view","subject":"user:ann"} {}`: "more than one value",
		`{"resource":"document:d1","permission":"view","subject":"user:ann"} x`:  "more than one value",
		`{"resource":"document:d1","permission":"view","subject":"user:ann",}`:   "at offset",
		`{"resource"}`: "at offset",
		`{"resource":"document:d1","permission":`: "unexpected end of input",
	} {
		status, out := h.call("POST", "/v1/check", body)
		if detail, _ := out["detail"].(string); status != 400 || !strings.Contains(detail, want) {
			t.Errorf("%s: status %d, detail %q; want 400 with %q", body, status, out["detail"], want)
		}
	}
	// ?pretty asks echo for indented JSON: the answer is still the same document
	req, _ := http.NewRequest("POST", h.url+"/v1/check?pretty", strings.NewReader(`{"resource":"document:d1","permission":"view","subject":"user:ann"}`))
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var got map[string]any
	if err := json.Unmarshal(raw, &got); resp.StatusCode != 200 || err != nil || !strings.Contains(string(raw), "\n  \"allowed\"") {
		t.Errorf("?pretty: status %d, %q", resp.StatusCode, raw)
	}
}
