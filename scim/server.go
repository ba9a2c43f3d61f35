package scim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/store"
)

// Limits advertised in ServiceProviderConfig.
const (
	MaxBodyBytes      = 1 << 20 // also bulk.maxPayloadSize
	MaxBulkOperations = 1000
	MaxResults        = 1000 // filter.maxResults: the largest page
	defaultCount      = 100
	mediaType         = "application/scim+json"
)

// Server serves /scim/v2/{org}.
type Server struct {
	dir *directory.Service
	log *slog.Logger
}

// New builds the SCIM server over the directory.
func New(dir *directory.Service, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{dir: dir, log: log}
}

// Mount registers the SCIM routes on e under /scim/v2/:org.
func (s *Server) Mount(e *echo.Echo) {
	const base = "/scim/v2/:org"
	for _, k := range []kind{users, groups} {
		s.route(e, http.MethodGet, base+"/"+k.endpoint, k.endpoint, s.list(k))
		s.route(e, http.MethodPost, base+"/"+k.endpoint+"/.search", k.endpoint, s.search(k))
		s.route(e, http.MethodPost, base+"/"+k.endpoint, k.endpoint, s.create(k))
		s.route(e, http.MethodGet, base+"/"+k.endpoint+"/:id", k.endpoint, s.get(k))
		s.route(e, http.MethodPut, base+"/"+k.endpoint+"/:id", k.endpoint, s.replace(k))
		s.route(e, http.MethodPatch, base+"/"+k.endpoint+"/:id", k.endpoint, s.patch(k))
		s.route(e, http.MethodDelete, base+"/"+k.endpoint+"/:id", k.endpoint, s.remove(k))
	}
	s.route(e, http.MethodPost, base+"/Bulk", "Bulk", s.bulk)
	s.route(e, http.MethodGet, base+"/ServiceProviderConfig", "ServiceProviderConfig", static(serviceProviderConfig))
	s.route(e, http.MethodGet, base+"/Schemas", "Schemas", s.schemas)
	s.route(e, http.MethodGet, base+"/Schemas/:id", "Schemas", s.schemaByID)
	s.route(e, http.MethodGet, base+"/ResourceTypes", "ResourceTypes", s.resourceTypes)
	s.route(e, http.MethodGet, base+"/ResourceTypes/:id", "ResourceTypes", s.resourceTypeByID)
	for _, path := range []string{"/scim/v2", "/scim/v2/*"} {
		e.Add(echo.RouteNotFound, path, func(c echo.Context) error {
			s.write(c, nil, errorf(http.StatusNotFound, "", "no such SCIM endpoint"))
			return nil
		})
	}
}

// request is one authenticated SCIM request.
type request struct {
	c    echo.Context
	ctx  context.Context
	p    directory.Principal
	org  string // the organization's id
	base string // https://host/scim/v2/{org}
}

// reply is what a handler answers.
type reply struct {
	status int
	body   any
	etag   string
	loc    string
}

type handler func(r *request) (reply, error)

// route wraps h: authenticate the org's token, answer in SCIM's media type
// and error schema, count the request in the sync status, and turn any panic
// into a SCIM 500 (never a torn response).
func (s *Server) route(e *echo.Echo, method, path, resource string, h handler) {
	e.Add(method, path, func(c echo.Context) error {
		var (
			rep reply
			err error
			org string
		)
		func() {
			defer func() {
				if v := recover(); v != nil {
					s.log.Error("SCIM handler panicked", "panic", v, "stack", string(debug.Stack()))
					err = errorf(http.StatusInternalServerError, "", "internal error")
				}
			}()
			var p directory.Principal
			p, org, err = s.authenticate(c)
			if err != nil {
				return
			}
			scheme := c.Scheme()
			r := &request{c: c, ctx: c.Request().Context(), p: p, org: org,
				base: scheme + "://" + c.Request().Host + "/scim/v2/" + c.Param("org")}
			rep, err = h(r)
		}()
		var se *Error
		if err != nil {
			se = asError(err)
			if se.Status == http.StatusInternalServerError {
				s.log.Error("SCIM request failed", "method", method, "path", c.Request().URL.Path, "err", err)
			}
		}
		if org != "" { // authenticated: count it
			rec := store.SCIMRequest{Org: org, Resource: resource, Method: method, Status: rep.status}
			if se != nil {
				rec.Status, rec.ScimType, rec.Detail = se.Status, se.ScimType, se.Detail
			}
			if err := s.dir.RecordSCIMRequest(context.WithoutCancel(c.Request().Context()), rec); err != nil {
				s.log.Warn("SCIM sync status not recorded", "err", err)
			}
		}
		s.write(c, &rep, se)
		return nil
	})
}

func (s *Server) write(c echo.Context, rep *reply, se *Error) {
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, mediaType)
	if se != nil {
		if se.Status == http.StatusUnauthorized {
			h.Set("WWW-Authenticate", `Bearer realm="trellis-scim"`)
		}
		c.Response().WriteHeader(se.Status)
		_ = json.NewEncoder(c.Response()).Encode(se.body())
		return
	}
	if rep.etag != "" {
		h.Set("ETag", rep.etag)
	}
	if rep.loc != "" {
		h.Set("Location", rep.loc)
	}
	if rep.body == nil {
		c.Response().WriteHeader(rep.status)
		return
	}
	c.Response().WriteHeader(rep.status)
	_ = json.NewEncoder(c.Response()).Encode(rep.body)
}

func (s *Server) authenticate(c echo.Context) (directory.Principal, string, error) {
	scheme, token, ok := strings.Cut(c.Request().Header.Get(echo.HeaderAuthorization), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return directory.Principal{}, "", errorf(http.StatusUnauthorized, "", "a SCIM bearer token is required")
	}
	return s.dir.AuthenticateSCIM(c.Request().Context(), c.Param("org"), token)
}

// body reads a JSON object (application/scim+json or application/json).
func body(c echo.Context) (map[string]any, error) {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	if ct != "" {
		mt, _, _ := strings.Cut(ct, ";")
		mt = strings.TrimSpace(strings.ToLower(mt))
		if mt != mediaType && mt != "application/json" {
			return nil, errorf(http.StatusUnsupportedMediaType, "invalidSyntax", "Content-Type must be %s or application/json", mediaType)
		}
	}
	raw, err := io.ReadAll(io.LimitReader(c.Request().Body, MaxBodyBytes+1))
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "invalidSyntax", "the body could not be read")
	}
	if len(raw) > MaxBodyBytes {
		return nil, errorf(http.StatusRequestEntityTooLarge, "tooMany", "the body is larger than %d bytes", MaxBodyBytes)
	}
	return decodeObject(raw)
}

func decodeObject(raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, errorf(http.StatusBadRequest, "invalidSyntax", "the body must be a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errorf(http.StatusBadRequest, "invalidSyntax", "the body must be one JSON object")
	}
	return m, nil
}

// ifMatch reads If-Match: "" or * match any version.
func ifMatch(c echo.Context) (int64, error) {
	v := strings.TrimSpace(c.Request().Header.Get("If-Match"))
	if v == "" || v == "*" {
		return directory.AnyVersion, nil
	}
	return parseVersion(v)
}

func parseVersion(v string) (int64, error) {
	v = strings.Trim(strings.TrimPrefix(strings.TrimSpace(v), "W/"), `"`)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, errorf(http.StatusPreconditionFailed, "", "version %q was not issued by this server", v)
	}
	return n, nil
}

// ---- resources

func (s *Server) fetch(r *request, k kind, id string) (directory.SCIMRecord, error) {
	return s.dir.SCIMGet(r.ctx, r.p, r.org, k.name, id)
}

func (s *Server) get(k kind) handler {
	return func(r *request) (reply, error) {
		rec, err := s.fetch(r, k, r.c.Param("id"))
		if err != nil {
			return reply{}, err
		}
		doc, err := k.render(rec, r.base)
		if err != nil {
			return reply{}, err
		}
		proj, err := projection(r.c.QueryParam("attributes"), r.c.QueryParam("excludedAttributes"))
		if err != nil {
			return reply{}, err
		}
		if inm := r.c.Request().Header.Get("If-None-Match"); inm != "" && inm == etag(rec.Version) {
			return reply{status: http.StatusNotModified, etag: etag(rec.Version)}, nil
		}
		if k.name == "User" && proj.wants("groups") {
			if err := s.withGroups(r, []map[string]any{doc}); err != nil {
				return reply{}, err
			}
		}
		return reply{status: http.StatusOK, body: proj.apply(doc), etag: etag(rec.Version)}, nil
	}
}

// state normalizes a body and derives the directory's view of it.
func (k kind) state(in map[string]any) (map[string]any, []byte, error) {
	doc, err := k.normalize(in)
	if err != nil {
		return nil, nil, err
	}
	raw, err := json.Marshal(doc)
	return doc, raw, err
}

// put writes a representation: id "" creates.
func (s *Server) put(w writer, k kind, id string, in map[string]any, version int64) (directory.SCIMRecord, error) {
	doc, raw, err := k.state(in)
	if err != nil {
		return directory.SCIMRecord{}, err
	}
	if k.name == "User" {
		st := userState(doc)
		st.Doc = raw
		return w.putUser(id, st, version)
	}
	st, err := groupState(doc)
	if err != nil {
		return directory.SCIMRecord{}, err
	}
	st.Doc = raw
	return w.putGroup(id, st, version)
}

func (s *Server) answer(r *request, k kind, rec directory.SCIMRecord, status int) (reply, error) {
	doc, err := k.render(rec, r.base)
	if err != nil {
		return reply{}, err
	}
	proj, err := projection(r.c.QueryParam("attributes"), r.c.QueryParam("excludedAttributes"))
	if err != nil {
		return reply{}, err
	}
	if k.name == "User" && proj.wants("groups") {
		if err := s.withGroups(r, []map[string]any{doc}); err != nil {
			return reply{}, err
		}
	}
	rep := reply{status: status, body: proj.apply(doc), etag: etag(rec.Version)}
	if status == http.StatusCreated {
		rep.loc = r.base + "/" + k.endpoint + "/" + rec.ID
	}
	return rep, nil
}

func (s *Server) create(k kind) handler {
	return func(r *request) (reply, error) {
		in, err := body(r.c)
		if err != nil {
			return reply{}, err
		}
		rec, err := s.put(direct{s, r}, k, "", in, directory.AnyVersion)
		if err != nil {
			return reply{}, err
		}
		return s.answer(r, k, rec, http.StatusCreated)
	}
}

func (s *Server) replace(k kind) handler {
	return func(r *request) (reply, error) {
		version, err := ifMatch(r.c)
		if err != nil {
			return reply{}, err
		}
		in, err := body(r.c)
		if err != nil {
			return reply{}, err
		}
		if _, err := s.fetch(r, k, r.c.Param("id")); err != nil {
			return reply{}, err
		}
		rec, err := s.put(direct{s, r}, k, r.c.Param("id"), in, version)
		if err != nil {
			return reply{}, err
		}
		return s.answer(r, k, rec, http.StatusOK)
	}
}

// patchRetries bounds how often a PATCH without If-Match re-reads a resource
// another request changed between its read and its write.
const patchRetries = 5

func (s *Server) patch(k kind) handler {
	return func(r *request) (reply, error) {
		want, err := ifMatch(r.c)
		if err != nil {
			return reply{}, err
		}
		in, err := body(r.c)
		if err != nil {
			return reply{}, err
		}
		ops, err := decodePatch(in)
		if err != nil {
			return reply{}, err
		}
		rec, err := s.patchOnce(direct{s, r}, k, r.c.Param("id"), ops, want)
		if err != nil {
			return reply{}, err
		}
		return s.answer(r, k, rec, http.StatusOK)
	}
}

// patchOnce applies ops to the stored representation and writes it back at
// the version it read (retrying a lost race unless the client named a version).
func (s *Server) patchOnce(w writer, k kind, id string, ops []patchOp, want int64) (directory.SCIMRecord, error) {
	for attempt := 0; ; attempt++ {
		cur, err := w.get(k, id)
		if err != nil {
			return cur, err
		}
		if want != directory.AnyVersion && cur.Version != want {
			return cur, directory.ErrSCIMVersion
		}
		doc := map[string]any{}
		if len(cur.Doc) > 0 {
			if doc, err = decodeObject(cur.Doc); err != nil {
				return cur, fmt.Errorf("stored SCIM %s %s: %w", k.name, id, err)
			}
		}
		next, err := k.applyPatch(doc, ops)
		if err != nil {
			return cur, err
		}
		rec, err := s.put(w, k, id, next, cur.Version)
		if errors.Is(err, directory.ErrSCIMVersion) && want == directory.AnyVersion && attempt < patchRetries {
			continue
		}
		return rec, err
	}
}

func (s *Server) remove(k kind) handler {
	return func(r *request) (reply, error) {
		version, err := ifMatch(r.c)
		if err != nil {
			return reply{}, err
		}
		if err := (direct{s, r}).remove(k, r.c.Param("id"), version); err != nil {
			return reply{}, err
		}
		return reply{status: http.StatusNoContent}, nil
	}
}

// ---- listing

// query is a list or .search request.
type query struct {
	filter, sortBy, sortOrder, attributes, excluded string
	startIndex, count                               int
}

func (s *Server) list(k kind) handler {
	return func(r *request) (reply, error) {
		q := query{filter: r.c.QueryParam("filter"), sortBy: r.c.QueryParam("sortBy"), sortOrder: r.c.QueryParam("sortOrder"),
			attributes: r.c.QueryParam("attributes"), excluded: r.c.QueryParam("excludedAttributes"), startIndex: 1, count: defaultCount}
		var err error
		if v := r.c.QueryParam("startIndex"); v != "" {
			if q.startIndex, err = strconv.Atoi(v); err != nil {
				return reply{}, errorf(http.StatusBadRequest, "invalidValue", "startIndex must be an integer")
			}
		}
		if v := r.c.QueryParam("count"); v != "" {
			if q.count, err = strconv.Atoi(v); err != nil {
				return reply{}, errorf(http.StatusBadRequest, "invalidValue", "count must be an integer")
			}
		}
		return s.query(r, k, q)
	}
}

func (s *Server) search(k kind) handler {
	return func(r *request) (reply, error) {
		in, err := body(r.c)
		if err != nil {
			return reply{}, err
		}
		q := query{startIndex: 1, count: defaultCount}
		strField := func(name string) (string, error) {
			_, v, ok := lookup(in, name)
			if !ok || v == nil {
				return "", nil
			}
			switch x := v.(type) {
			case string:
				return x, nil
			case []any: // attributes as a list
				var parts []string
				for _, e := range x {
					s, ok := e.(string)
					if !ok {
						return "", errorf(http.StatusBadRequest, "invalidValue", "%s must list strings", name)
					}
					parts = append(parts, s)
				}
				return strings.Join(parts, ","), nil
			}
			return "", errorf(http.StatusBadRequest, "invalidValue", "%s must be a string", name)
		}
		intField := func(name string, def int) (int, error) {
			_, v, ok := lookup(in, name)
			if !ok || v == nil {
				return def, nil
			}
			n, ok := v.(json.Number)
			i, err := strconv.Atoi(string(n))
			if !ok || err != nil {
				return 0, errorf(http.StatusBadRequest, "invalidValue", "%s must be an integer", name)
			}
			return i, nil
		}
		for name, dst := range map[string]*string{"filter": &q.filter, "sortBy": &q.sortBy, "sortOrder": &q.sortOrder, "attributes": &q.attributes, "excludedAttributes": &q.excluded} {
			if *dst, err = strField(name); err != nil {
				return reply{}, err
			}
		}
		if q.startIndex, err = intField("startIndex", 1); err != nil {
			return reply{}, err
		}
		if q.count, err = intField("count", defaultCount); err != nil {
			return reply{}, err
		}
		return s.query(r, k, q)
	}
}

func (s *Server) query(r *request, k kind, q query) (reply, error) {
	if q.startIndex < 1 {
		q.startIndex = 1 // RFC 7644 §3.4.2.4: less than 1 is 1
	}
	if q.count < 0 {
		q.count = 0
	}
	if q.count > MaxResults {
		q.count = MaxResults
	}
	var desc bool
	switch strings.ToLower(q.sortOrder) {
	case "", "ascending":
	case "descending":
		desc = true
	default:
		return reply{}, errorf(http.StatusBadRequest, "invalidValue", "sortOrder must be ascending or descending")
	}
	proj, err := projection(q.attributes, q.excluded)
	if err != nil {
		return reply{}, err
	}
	var docs []map[string]any
	groupsDone := false
	if q.filter != "" {
		expr, err := parseFilter(q.filter)
		if err != nil {
			return reply{}, err
		}
		recs, err := s.candidates(r, k, expr)
		if err != nil {
			return reply{}, err
		}
		var all []map[string]any
		for _, rec := range recs {
			doc, err := k.render(rec, r.base)
			if err != nil {
				return reply{}, err
			}
			all = append(all, doc)
		}
		if k.name == "User" && filterNamesGroups(q.filter) {
			if err := s.withGroups(r, all); err != nil {
				return reply{}, err
			}
			groupsDone = true
		}
		for _, doc := range all {
			ok, err := match(expr, doc)
			if err != nil {
				return reply{}, err
			}
			if ok {
				docs = append(docs, doc)
			}
		}
	} else {
		recs, err := s.dir.SCIMList(r.ctx, r.p, r.org, k.name)
		if err != nil {
			return reply{}, err
		}
		for _, rec := range recs {
			doc, err := k.render(rec, r.base)
			if err != nil {
				return reply{}, err
			}
			docs = append(docs, doc)
		}
	}
	if q.sortBy != "" {
		p, err := parsePath(q.sortBy)
		if err != nil {
			return reply{}, errorf(http.StatusBadRequest, "invalidValue", "sortBy %q is not an attribute path", q.sortBy)
		}
		key := func(d map[string]any) string {
			vs, _ := values(d, p.AttributePath)
			if len(vs) == 0 {
				return ""
			}
			return strings.ToLower(fmt.Sprint(vs[0]))
		}
		slices.SortStableFunc(docs, func(a, b map[string]any) int {
			c := strings.Compare(key(a), key(b))
			if desc {
				c = -c
			}
			return c
		})
	}
	total := len(docs)
	from := min(q.startIndex-1, total)
	to := min(from+q.count, total)
	if k.name == "User" && !groupsDone && proj.wants("groups") {
		if err := s.withGroups(r, docs[from:to]); err != nil {
			return reply{}, err
		}
	}
	page := make([]any, 0, to-from)
	for _, d := range docs[from:to] {
		page = append(page, proj.apply(d))
	}
	return reply{status: http.StatusOK, body: map[string]any{
		"schemas": []string{schemaList}, "totalResults": total, "startIndex": q.startIndex, "itemsPerPage": len(page), "Resources": page,
	}}, nil
}

// candidates narrows a filter of the form userName/displayName eq "…" (what
// identity providers send before every create) to an index lookup.
func (s *Server) candidates(r *request, k kind, expr any) ([]directory.SCIMRecord, error) {
	if name, ok := nameEquality(k, expr); ok {
		rec, found, err := s.dir.SCIMByName(r.ctx, r.p, r.org, k.name, name)
		if err != nil || !found {
			return nil, err
		}
		return []directory.SCIMRecord{rec}, nil
	}
	return s.dir.SCIMList(r.ctx, r.p, r.org, k.name)
}
