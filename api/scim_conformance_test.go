package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// conformanceCase is one entry of testdata/scim/conformance.json.
type conformanceCase struct {
	Name           string            `json:"name"`
	RFC            string            `json:"rfc"`
	Method         string            `json:"method"`
	Path           string            `json:"path"`
	Body           any               `json:"body"`
	Raw            string            `json:"raw"`
	BulkOps        int               `json:"bulk_ops"`
	NoAuth         bool              `json:"no_auth"`
	RequestHeaders map[string]string `json:"request_headers"`
	Status         int               `json:"status"`
	ScimType       string            `json:"scimType"`
	Expect         map[string]any    `json:"expect"`
	Has            []string          `json:"has"`
	Lacks          []string          `json:"lacks"`
	Headers        []string          `json:"headers"`
	Save           map[string]string `json:"save"`
}

// dig follows a dotted path (numbers index arrays; a key may itself hold
// dots or colons, as extension URNs do: the longest matching key wins).
func dig(v any, path string) (any, bool) {
	if path == "" {
		return v, true
	}
	switch x := v.(type) {
	case map[string]any:
		for i := len(path); i > 0; i-- {
			if i < len(path) && path[i] != '.' {
				continue
			}
			if e, ok := x[path[:i]]; ok {
				return dig(e, strings.TrimPrefix(path[i:], "."))
			}
		}
	case []any:
		head, rest, _ := strings.Cut(path, ".")
		if n, err := strconv.Atoi(head); err == nil && n >= 0 && n < len(x) {
			return dig(x[n], rest)
		}
	}
	return nil, false
}

// TestSCIMConformance runs the RFC 7643/7644 conformance table in order
// against acme's /scim/v2 (make scim-conformance). No public SCIM
// conformance suite runs offline here; this table is its stand-in.
func TestSCIMConformance(t *testing.T) {
	raw, err := os.ReadFile("../testdata/scim/conformance.json")
	if err != nil {
		t.Fatal(err)
	}
	var suite struct {
		Cases []conformanceCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &suite); err != nil {
		t.Fatal(err)
	}
	w := newSCIMWorld(t)
	saved := map[string]string{}
	subst := func(s string) string {
		for k, v := range saved {
			s = strings.ReplaceAll(s, "{{"+k+"}}", v)
		}
		return s
	}
	passed := 0
	for i, c := range suite.Cases {
		ok := t.Run(fmt.Sprintf("%02d %s", i, c.Name), func(t *testing.T) {
			var body io.Reader
			switch {
			case c.Raw != "":
				body = strings.NewReader(c.Raw)
			case c.BulkOps > 0:
				b, _ := json.Marshal(bulkOf(c.BulkOps))
				body = bytes.NewReader(b)
			case c.Body != nil:
				b, _ := json.Marshal(c.Body)
				body = strings.NewReader(subst(string(b)))
			}
			req, _ := http.NewRequest(c.Method, w.h.url+"/scim/v2/acme"+subst(c.Path), body)
			req.Header.Set("Content-Type", "application/scim+json")
			if !c.NoAuth {
				req.Header.Set("Authorization", "Bearer "+w.acmeSCIM)
			}
			for k, v := range c.RequestHeaders {
				req.Header.Set(k, subst(v))
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			rb, _ := io.ReadAll(resp.Body)
			var out any = map[string]any{}
			if len(rb) > 0 {
				if err := json.Unmarshal(rb, &out); err != nil {
					t.Fatalf("%s: body is not JSON: %q", c.RFC, rb)
				}
			}
			if resp.StatusCode != c.Status {
				t.Fatalf("%s: status %d, want %d: %s", c.RFC, resp.StatusCode, c.Status, rb)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/scim+json" && resp.StatusCode != http.StatusNotModified {
				t.Errorf("%s: Content-Type %q", c.RFC, ct)
			}
			if c.Status >= 400 {
				m := out.(map[string]any)
				if !slices.Contains(strs(m["schemas"]), scimErrorURN) || m["status"] != strconv.Itoa(c.Status) {
					t.Errorf("%s: not a SCIM error with status %q: %v", c.RFC, strconv.Itoa(c.Status), m)
				}
				if c.ScimType != "" && m["scimType"] != c.ScimType {
					t.Errorf("%s: scimType %v, want %s", c.RFC, m["scimType"], c.ScimType)
				}
			}
			for path, want := range c.Expect {
				got, found := dig(out, subst(path))
				if s, isStr := want.(string); isStr {
					want = subst(s)
				}
				if !found || fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s: %s = %v, want %v", c.RFC, path, got, want)
				}
			}
			for _, path := range c.Has {
				if _, found := dig(out, path); !found {
					t.Errorf("%s: %s missing", c.RFC, path)
				}
			}
			for _, path := range c.Lacks {
				if v, found := dig(out, path); found {
					t.Errorf("%s: %s = %v, want absent", c.RFC, path, v)
				}
			}
			for _, h := range c.Headers {
				if resp.Header.Get(h) == "" {
					t.Errorf("%s: no %s header", c.RFC, h)
				}
			}
			for name, path := range c.Save {
				v, _ := dig(out, path)
				s, _ := v.(string)
				if s == "" {
					t.Fatalf("nothing to save at %s", path)
				}
				saved[name] = s
			}
		})
		if ok {
			passed++
		}
	}
	t.Logf("conformance: %d of %d cases pass (testdata/scim/conformance.json)", passed, len(suite.Cases))
}
