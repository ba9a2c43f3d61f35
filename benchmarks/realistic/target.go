package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// target is one arm's server as the workers and the seeders see it.
type target struct {
	kind         string // "ceiling", "trellis", "openfga" or "spicedb"
	base         string // http://host:port
	key          string // Trellis admin key, SpiceDB preshared key
	store, model string // OpenFGA ids
	client       *http.Client
}

// check builds the request for "may user u view document d"; token, when set,
// asks for an answer at least as fresh as a write (OpenFGA has no tokens: it
// asks for HIGHER_CONSISTENCY). SpiceDB's checks without a token minimize
// latency, as Trellis's do.
func (t *target) check(u, d int32, token string, fresh bool) (string, []byte) {
	if t.kind == "spicedb" {
		return spicedbCheck(fmt.Sprintf("d%d", d), "user", fmt.Sprintf("u%d", u), token, fresh)
	}
	if t.kind == "openfga" {
		consistency := ""
		if fresh {
			consistency = `,"consistency":"HIGHER_CONSISTENCY"`
		}
		return "/stores/" + url.PathEscape(t.store) + "/check",
			fmt.Appendf(nil, `{"authorization_model_id":%s,"tuple_key":{"user":"user:u%d","relation":"view","object":"document:d%d"}%s}`, jsonString(t.model), u, d, consistency)
	}
	consistency := ""
	if fresh {
		consistency = `,"consistency":{"atLeastAsFresh":` + string(jsonString(token)) + `}`
	}
	return "/v1/check", fmt.Appendf(nil, `{"resource":"document:d%d","permission":"view","subject":"user:u%d"%s}`, d, u, consistency)
}

// checkAs is check for a subject named in full (the writers' users).
func (t *target) checkSubject(subject string, d int32, token string) (string, []byte) {
	if t.kind == "spicedb" {
		typ, id, _ := strings.Cut(subject, ":")
		return spicedbCheck(fmt.Sprintf("d%d", d), typ, id, token, true)
	}
	if t.kind == "openfga" {
		return "/stores/" + url.PathEscape(t.store) + "/check",
			fmt.Appendf(nil, `{"authorization_model_id":%s,"tuple_key":{"user":%s,"relation":"view","object":"document:d%d"},"consistency":"HIGHER_CONSISTENCY"}`, jsonString(t.model), jsonString(subject), d)
	}
	return "/v1/check", fmt.Appendf(nil, `{"resource":"document:d%d","permission":"view","subject":%s,"consistency":{"atLeastAsFresh":%s}}`, d, jsonString(subject), jsonString(token))
}

// write builds a raw write of one viewer relationship on document d: touch
// (add) or delete.
func (t *target) write(touch bool, d int32, subject string) (string, []byte) {
	if t.kind == "spicedb" {
		op := "OPERATION_DELETE"
		if touch {
			op = "OPERATION_TOUCH"
		}
		typ, id, _ := strings.Cut(subject, ":")
		return "/v1/relationships/write", fmt.Appendf(nil, `{"updates":[{"operation":%q,"relationship":{"resource":{"objectType":"document","objectId":"d%d"},"relation":"viewer","subject":{"object":{"objectType":%s,"objectId":%s}}}}]}`,
			op, d, jsonString(typ), jsonString(id))
	}
	if t.kind == "openfga" {
		field := "deletes"
		if touch {
			field = "writes"
		}
		return "/stores/" + url.PathEscape(t.store) + "/write",
			fmt.Appendf(nil, `{"authorization_model_id":%s,%q:{"tuple_keys":[{"user":%s,"relation":"viewer","object":"document:d%d"}]}}`, jsonString(t.model), field, jsonString(subject), d)
	}
	op := "delete"
	if touch {
		op = "touch"
	}
	return "/v1/relationships/write", fmt.Appendf(nil, `{"updates":[{"operation":%q,"relationship":{"resource":"document:d%d","relation":"viewer","subject":%s}}]}`, op, d, jsonString(subject))
}

// do sends one request and returns the response body when the status is 200
// or 201.
func (t *target) do(method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequest(method, t.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if t.kind == "trellis" || t.kind == "spicedb" {
		req.Header.Set("Authorization", "Bearer "+t.key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		if len(raw) > 300 {
			raw = raw[:300]
		}
		return nil, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(raw))
	}
	return raw, nil
}

// call sends v as JSON and decodes the answer into out (when not nil).
func (t *target) call(method, path string, v, out any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	body, err := t.do(method, path, raw)
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(body, out)
}

var (
	allowedTrue = []byte(`"allowed":true`)
	// SpiceDB's gateway writes JSON with protojson, which may put a space
	// after the colon: the enum value alone is matched (quoted, so that
	// PERMISSIONSHIP_CONDITIONAL_PERMISSION does not match).
	hasPermission = []byte(`"PERMISSIONSHIP_HAS_PERMISSION"`)
)

// isAllowed reads a check answer of any of the APIs: Trellis's and OpenFGA's
// "allowed":true, SpiceDB's "permissionship":"PERMISSIONSHIP_HAS_PERMISSION"
// (a conditional answer, which this data never gives, is a denial).
func isAllowed(body []byte) bool {
	return bytes.Contains(body, allowedTrue) || bytes.Contains(body, hasPermission)
}

// writtenAt is the revision token of a write: Trellis's "writtenAt" string,
// SpiceDB's "writtenAt":{"token":…} ("" for OpenFGA).
func writtenAt(body []byte) string {
	var v struct {
		WrittenAt json.RawMessage `json:"writtenAt"`
	}
	if json.Unmarshal(body, &v) != nil || len(v.WrittenAt) == 0 {
		return ""
	}
	var token string
	if json.Unmarshal(v.WrittenAt, &token) == nil {
		return token
	}
	var zed struct {
		Token string `json:"token"`
	}
	_ = json.Unmarshal(v.WrittenAt, &zed)
	return zed.Token
}

// spicedbCheck is SpiceDB's /v1/permissions/check of document doc's view for
// the subject subjectType:subjectID: at least as fresh as token when fresh,
// else minimizing latency.
func spicedbCheck(doc, subjectType, subjectID, token string, fresh bool) (string, []byte) {
	consistency := `{"minimizeLatency":true}`
	if fresh {
		consistency = `{"atLeastAsFresh":{"token":` + string(jsonString(token)) + `}}`
	}
	return "/v1/permissions/check", fmt.Appendf(nil, `{"consistency":%s,"resource":{"objectType":"document","objectId":%s},"permission":"view","subject":{"object":{"objectType":%s,"objectId":%s}}}`,
		consistency, jsonString(doc), jsonString(subjectType), jsonString(subjectID))
}

// cacheCounters reads Trellis's check cache hits and misses from /metrics.
func (t *target) cacheCounters() (hits, misses float64, ok bool) {
	if t.kind != "trellis" {
		return 0, 0, false
	}
	resp, err := t.client.Get(t.base + "/metrics")
	if err != nil {
		return 0, 0, false
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var h, m bool
	for _, line := range strings.Split(string(raw), "\n") {
		var v float64
		if n, _ := fmt.Sscanf(line, "trellis_check_cache_hits_total %g", &v); n == 1 {
			hits, h = v, true
		}
		if n, _ := fmt.Sscanf(line, "trellis_check_cache_misses_total %g", &v); n == 1 {
			misses, m = v, true
		}
	}
	return hits, misses, h && m
}

func jsonString(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}
