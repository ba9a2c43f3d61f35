package scim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/trellis-iam/trellis/directory"
)

// bulk runs a BulkRequest (RFC 7644 §3.7) in order, as one directory
// operation (directory.SCIMBatch): each operation is a step that is kept or,
// when it fails, undone entirely, and the kept ones commit together — one
// transaction, one outbox entry, one write to the graph. failOnErrors stops
// it after that many failures; the operations before the stop stay applied
// and each one's result is reported. Later operations may name resources
// created by earlier ones as "bulkId:<id>" (in their path or data). A
// failure of the service itself (store or engine unavailable) ends the whole
// request with nothing applied.
func (s *Server) bulk(r *request) (reply, error) {
	in, err := body(r.c)
	if err != nil {
		return reply{}, err
	}
	_, raw, _ := lookup(in, "Operations")
	list, ok := raw.([]any)
	if !ok {
		return reply{}, errorf(http.StatusBadRequest, "invalidSyntax", "a BulkRequest needs an Operations list")
	}
	if len(list) > MaxBulkOperations {
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
	ops := make([]map[string]any, len(list))
	for i, el := range list {
		if ops[i], ok = el.(map[string]any); !ok {
			return reply{}, errorf(http.StatusBadRequest, "invalidSyntax", "Operations[%d] must be an object", i)
		}
	}
	var results []any
	aheadUsers, aheadGroups := lookahead(ops)
	err = s.dir.SCIMBatch(r.ctx, r.p, r.org, func(b *directory.SCIMBatch) error {
		if err := b.Prefetch(aheadUsers, aheadGroups); err != nil {
			return err
		}
		ids := map[string]string{} // bulkId → created id
		results = []any{}
		failures := 0
		for _, op := range ops {
			var res bulkResult
			err := b.Step(func() error {
				var err error
				res, err = s.bulkOne(r, batched{b}, op, ids)
				return err
			})
			out := res.out
			if err != nil {
				se := asError(err)
				if se.Status >= http.StatusInternalServerError {
					return err // the service failed: nothing of the request commits
				}
				out["status"] = fmt.Sprint(se.Status)
				out["response"] = se.body()
				delete(out, "location")
				delete(out, "version")
				results = append(results, out)
				failures++
				if failOn > 0 && failures >= failOn {
					break
				}
				continue
			}
			if res.bulkID != "" && res.created != "" {
				ids[res.bulkID] = res.created
			}
			results = append(results, out)
		}
		return nil
	})
	if err != nil {
		return reply{}, err
	}
	return reply{status: http.StatusOK, body: map[string]any{"schemas": []string{schemaBulkResp}, "Operations": results}}, nil
}

// lookahead is what the request's POST and PUT operations want of users and
// groups, for the batch to read ahead what its steps will look up (a
// representation that does not parse is left out: its step fails anyway).
func lookahead(ops []map[string]any) ([]directory.SCIMUserState, []directory.SCIMGroupState) {
	var us []directory.SCIMUserState
	var gs []directory.SCIMGroupState
	for _, op := range ops {
		_, m, _ := lookup(op, "method")
		_, p, _ := lookup(op, "path")
		_, data, _ := lookup(op, "data")
		method, _ := m.(string)
		path, _ := p.(string)
		doc, ok := deepCopy(data).(map[string]any)
		if !ok || !strings.EqualFold(method, http.MethodPost) && !strings.EqualFold(method, http.MethodPut) {
			continue
		}
		seg, _, _ := strings.Cut(strings.Trim(path, "/"), "/")
		switch {
		case strings.EqualFold(seg, users.endpoint):
			if doc, err := users.normalize(doc); err == nil {
				us = append(us, userState(doc))
			}
		case strings.EqualFold(seg, groups.endpoint):
			if doc, err := groups.normalize(doc); err == nil {
				if st, err := groupState(doc); err == nil {
					gs = append(gs, st)
				}
			}
		}
	}
	return us, gs
}

// bulkResult is one operation's entry in the BulkResponse, and the id it
// created (for later bulkId references).
type bulkResult struct {
	out             map[string]any
	bulkID, created string
}

func (s *Server) bulkOne(r *request, w writer, op map[string]any, ids map[string]string) (bulkResult, error) {
	str := func(k string) string { _, v, _ := lookup(op, k); s, _ := v.(string); return s }
	method, path, bulkID := strings.ToUpper(str("method")), str("path"), str("bulkId")
	res := bulkResult{out: map[string]any{"method": method}, bulkID: bulkID}
	out := res.out
	if bulkID != "" {
		out["bulkId"] = bulkID
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
	data = replaceBulkIDs(deepCopy(data), resolve) // a copy: the batch may run the request twice
	if unresolved != "" {
		return res, errorf(http.StatusConflict, "invalidValue", "bulkId %q names no earlier operation's resource", unresolved)
	}
	var k kind
	switch {
	case len(segs) >= 1 && strings.EqualFold(segs[0], "Users"):
		k = users
	case len(segs) >= 1 && strings.EqualFold(segs[0], "Groups"):
		k = groups
	default:
		return res, errorf(http.StatusBadRequest, "invalidPath", "path %q is not /Users or /Groups", path)
	}
	version := directory.AnyVersion
	if v := str("version"); v != "" {
		n, err := parseVersion(v)
		if err != nil {
			return res, err
		}
		version = n
	}
	m, _ := data.(map[string]any)
	switch {
	case method == http.MethodPost && len(segs) == 1:
		if m == nil {
			return res, errorf(http.StatusBadRequest, "invalidSyntax", "POST needs data")
		}
		rec, err := s.put(w, k, "", m, directory.AnyVersion)
		if err != nil {
			return res, err
		}
		res.created = rec.ID
		out["status"], out["location"], out["version"] = "201", r.base+"/"+k.endpoint+"/"+rec.ID, etag(rec.Version)
	case len(segs) == 2 && method == http.MethodPut:
		if m == nil {
			return res, errorf(http.StatusBadRequest, "invalidSyntax", "PUT needs data")
		}
		if _, err := w.get(k, segs[1]); err != nil {
			return res, err
		}
		rec, err := s.put(w, k, segs[1], m, version)
		if err != nil {
			return res, err
		}
		out["status"], out["location"], out["version"] = "200", r.base+"/"+k.endpoint+"/"+rec.ID, etag(rec.Version)
	case len(segs) == 2 && method == http.MethodPatch:
		if m == nil {
			return res, errorf(http.StatusBadRequest, "invalidSyntax", "PATCH needs data")
		}
		ops, err := decodePatch(m)
		if err != nil {
			return res, err
		}
		rec, err := s.patchOnce(w, k, segs[1], ops, version)
		if err != nil {
			return res, err
		}
		out["status"], out["location"], out["version"] = "200", r.base+"/"+k.endpoint+"/"+rec.ID, etag(rec.Version)
	case len(segs) == 2 && method == http.MethodDelete:
		if err := w.remove(k, segs[1], version); err != nil {
			return res, err
		}
		out["status"] = "204"
	default:
		return res, errorf(http.StatusBadRequest, "invalidSyntax", "method %q does not apply to path %q", method, path)
	}
	return res, nil
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
