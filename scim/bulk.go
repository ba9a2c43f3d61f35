package scim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/trellis-iam/trellis/directory"
)

// bulk runs a BulkRequest (RFC 7644 §3.7) in order; failOnErrors stops it
// after that many failures. Later operations may name resources created by
// earlier ones as "bulkId:<id>" (in their path or data).
func (s *Server) bulk(r *request) (reply, error) {
	in, err := body(r.c)
	if err != nil {
		return reply{}, err
	}
	_, raw, _ := lookup(in, "Operations")
	ops, ok := raw.([]any)
	if !ok {
		return reply{}, errorf(http.StatusBadRequest, "invalidSyntax", "a BulkRequest needs an Operations list")
	}
	if len(ops) > MaxBulkOperations {
		return reply{}, errorf(http.StatusRequestEntityTooLarge, "tooMany", "at most %d operations per bulk request", MaxBulkOperations)
	}
	failOn := 0
	if _, v, ok := lookup(in, "failOnErrors"); ok && v != nil {
		n, isNum := v.(json.Number)
		i, err := n.Int64()
		if !isNum || err != nil || i < 0 {
			return reply{}, errorf(http.StatusBadRequest, "invalidValue", "failOnErrors must be a non-negative integer")
		}
		failOn = int(i)
	}
	ids := map[string]string{} // bulkId → created id
	results := []any{}
	failures := 0
	for i, el := range ops {
		op, ok := el.(map[string]any)
		if !ok {
			return reply{}, errorf(http.StatusBadRequest, "invalidSyntax", "Operations[%d] must be an object", i)
		}
		res := s.bulkOne(r, op, ids)
		results = append(results, res)
		if st, _ := res["status"].(string); st >= "400" {
			failures++
			if failOn > 0 && failures >= failOn {
				break
			}
		}
	}
	return reply{status: http.StatusOK, body: map[string]any{"schemas": []string{schemaBulkResp}, "Operations": results}}, nil
}

func (s *Server) bulkOne(r *request, op map[string]any, ids map[string]string) map[string]any {
	str := func(k string) string { _, v, _ := lookup(op, k); s, _ := v.(string); return s }
	method, path, bulkID := strings.ToUpper(str("method")), str("path"), str("bulkId")
	out := map[string]any{"method": method}
	if bulkID != "" {
		out["bulkId"] = bulkID
	}
	fail := func(err error) map[string]any {
		se := asError(err)
		out["status"] = fmt.Sprint(se.Status)
		out["response"] = se.body()
		return out
	}
	// resolve bulkId references in the path and the data
	var unresolved string
	resolve := func(v string) string {
		if ref, ok := strings.CutPrefix(v, "bulkId:"); ok {
			if id, ok := ids[ref]; ok {
				return id
			}
			unresolved = ref
		}
		return v
	}
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for i := range segs {
		segs[i] = resolve(segs[i])
	}
	_, data, _ := lookup(op, "data")
	data = replaceBulkIDs(data, resolve)
	if unresolved != "" {
		return fail(errorf(http.StatusConflict, "invalidValue", "bulkId %q names no earlier operation's resource", unresolved))
	}
	var k kind
	switch {
	case len(segs) >= 1 && strings.EqualFold(segs[0], "Users"):
		k = users
	case len(segs) >= 1 && strings.EqualFold(segs[0], "Groups"):
		k = groups
	default:
		return fail(errorf(http.StatusBadRequest, "invalidPath", "path %q is not /Users or /Groups", path))
	}
	version := directory.AnyVersion
	if v := str("version"); v != "" {
		n, err := parseVersion(v)
		if err != nil {
			return fail(err)
		}
		version = n
	}
	m, _ := data.(map[string]any)
	switch {
	case method == http.MethodPost && len(segs) == 1:
		if m == nil {
			return fail(errorf(http.StatusBadRequest, "invalidSyntax", "POST needs data"))
		}
		rec, _, err := s.put(r, k, "", m, directory.AnyVersion)
		if err != nil {
			return fail(err)
		}
		if bulkID != "" {
			ids[bulkID] = rec.ID
		}
		out["status"], out["location"], out["version"] = "201", r.base+"/"+k.endpoint+"/"+rec.ID, etag(rec.Version)
	case len(segs) == 2 && method == http.MethodPut:
		if m == nil {
			return fail(errorf(http.StatusBadRequest, "invalidSyntax", "PUT needs data"))
		}
		if _, err := s.fetch(r, k, segs[1]); err != nil {
			return fail(err)
		}
		rec, _, err := s.put(r, k, segs[1], m, version)
		if err != nil {
			return fail(err)
		}
		out["status"], out["location"], out["version"] = "200", r.base+"/"+k.endpoint+"/"+rec.ID, etag(rec.Version)
	case len(segs) == 2 && method == http.MethodPatch:
		if m == nil {
			return fail(errorf(http.StatusBadRequest, "invalidSyntax", "PATCH needs data"))
		}
		ops, err := decodePatch(m)
		if err != nil {
			return fail(err)
		}
		rec, err := s.patchOnce(r, k, segs[1], ops, version)
		if err != nil {
			return fail(err)
		}
		out["status"], out["location"], out["version"] = "200", r.base+"/"+k.endpoint+"/"+rec.ID, etag(rec.Version)
	case len(segs) == 2 && method == http.MethodDelete:
		var err error
		if k.name == "User" {
			err = s.dir.SCIMDeleteUser(r.ctx, r.p, r.org, segs[1], version)
		} else {
			err = s.dir.SCIMDeleteGroup(r.ctx, r.p, r.org, segs[1], version)
		}
		if err != nil {
			return fail(err)
		}
		out["status"] = "204"
	default:
		return fail(errorf(http.StatusBadRequest, "invalidSyntax", "method %q does not apply to path %q", method, path))
	}
	return out
}

func replaceBulkIDs(v any, resolve func(string) string) any {
	switch x := v.(type) {
	case string:
		return resolve(x)
	case map[string]any:
		for k, e := range x {
			x[k] = replaceBulkIDs(e, resolve)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = replaceBulkIDs(e, resolve)
		}
		return x
	}
	return v
}
