package api

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
)

// maxBulkItems is the largest POST /v1/check/bulk.
const maxBulkItems = 1000

type checkResultJSON struct {
	Allowed        bool     `json:"allowed"`
	Permissionship string   `json:"permissionship"`
	MissingContext []string `json:"missingContext,omitempty"`
	CheckedAt      string   `json:"checkedAt"`
	Cached         bool     `json:"cached"`
}

func toCheckResult(r engine.CheckResult) checkResultJSON {
	return checkResultJSON{
		Allowed: r.Allowed(), Permissionship: string(r.Permissionship),
		MissingContext: r.MissingContext, CheckedAt: r.CheckedAt, Cached: r.Cached,
	}
}

// appendJSON appends the answer as encoding/json would (one line), by hand: it
// is on every check's path. It reports false, leaving the work to
// encoding/json, for anything but the common answer: no missing context and a
// checkedAt token of characters JSON writes verbatim.
func (r checkResultJSON) appendJSON(dst []byte) ([]byte, bool) {
	if len(r.MissingContext) > 0 || !verbatimJSON(r.Permissionship) || !verbatimJSON(r.CheckedAt) {
		return dst, false
	}
	dst = append(dst, `{"allowed":`...)
	dst = strconv.AppendBool(dst, r.Allowed)
	dst = append(dst, `,"permissionship":"`...)
	dst = append(dst, r.Permissionship...)
	dst = append(dst, `","checkedAt":"`...)
	dst = append(dst, r.CheckedAt...)
	dst = append(dst, `","cached":`...)
	dst = strconv.AppendBool(dst, r.Cached)
	return append(dst, "}\n"...), true
}

// verbatimJSON reports whether encoding/json writes s between quotes unchanged:
// printable ASCII without the characters it escapes.
func verbatimJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// ActorGate decides whether an impersonation of target by actor is live,
// allows permission and reaches resource (it lies inside the impersonation's
// organization subtree).
type ActorGate interface {
	Live(ctx context.Context, actor, target engine.SubjectRef, resource engine.ObjectRef, permission string) (bool, error)
}

func (s *Server) mountAuthz(g routes) {
	g.POST("/check", s.check)
	g.POST("/check/bulk", s.checkBulk)
	g.POST("/lookup/resources", s.lookupResources)
	g.POST("/lookup/subjects", s.lookupSubjects)
	g.POST("/explain", s.explain)
}

// checkOne runs one check, honouring an impersonation actor: the answer is
// allowed only when the target holds the permission and an impersonation of
// it by the actor is live with the permission inside its scope and the
// resource inside its organization's subtree. Checks without an actor take
// the cached path alone. org, when set, is the organization the caller's API
// key is bound to: resource and subject must lie inside its subtree.
func (s *Server) checkOne(ctx context.Context, in checkJSON, org string) (engine.CheckResult, error) {
	req, err := in.parse()
	if err != nil {
		return engine.CheckResult{}, err
	}
	if org != "" {
		if err := s.confineCheck(ctx, org, req); err != nil {
			return engine.CheckResult{}, err
		}
	}
	res, err := s.checker.Check(ctx, req)
	if err != nil {
		return engine.CheckResult{}, err
	}
	if in.Actor == "" || res.Permissionship == engine.NoPermission {
		return res, nil
	}
	actor, err := engine.ParseSubjectRef("actor", in.Actor)
	if err != nil {
		return engine.CheckResult{}, err
	}
	live, err := s.actors.Live(ctx, actor, req.Subject, req.Resource, req.Permission)
	if err != nil {
		return engine.CheckResult{}, err
	}
	if !live {
		res.Permissionship, res.MissingContext = engine.NoPermission, nil
	}
	return res, nil
}

func (s *Server) check(c echo.Context) error {
	var in checkJSON
	if err := bind(c, &in); err != nil {
		return err
	}
	org, _ := confined(c)
	start := time.Now()
	res, err := s.checkOne(c.Request().Context(), in, org)
	if err != nil {
		return err
	}
	s.observeCheck(start, res.Cached)
	s.logDecision(c, in, res, start)
	out := toCheckResult(res)
	if raw, ok := out.appendJSON(make([]byte, 0, 160)); ok && c.Request().URL.RawQuery == "" { // ?pretty: echo indents
		return c.JSONBlob(http.StatusOK, raw)
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) checkBulk(c echo.Context) error {
	var in struct {
		Items       []checkJSON     `json:"items"`
		Consistency consistencyJSON `json:"consistency"`
	}
	if err := bind(c, &in); err != nil {
		return err
	}
	switch {
	case in.Items == nil:
		return trellis.Invalid("items", "is required")
	case len(in.Items) > maxBulkItems:
		return trellis.Invalid("items", "at most %d items per request, got %d", maxBulkItems, len(in.Items))
	}
	reqs := make([]engine.CheckRequest, len(in.Items))
	anyActor := false
	for i, item := range in.Items {
		if item.Consistency == nil {
			item.Consistency = in.Consistency
		}
		r, err := item.parse()
		if err != nil {
			return trellis.WithField(fmt.Sprintf("items[%d]", i), err)
		}
		reqs[i] = r
		anyActor = anyActor || item.Actor != ""
	}
	results := make([]checkResultJSON, len(reqs))
	ctx := c.Request().Context()
	start := time.Now()
	org, bound := confined(c)
	if bound && !anyActor {
		for i, r := range reqs {
			if err := s.confineCheck(ctx, org, r); err != nil {
				return fmt.Errorf("items[%d]: %w", i, err)
			}
		}
	}
	if anyActor {
		for i, item := range in.Items {
			if item.Consistency == nil {
				item.Consistency = in.Consistency
			}
			res, err := s.checkOne(ctx, item, org)
			if err != nil {
				if errors.Is(err, trellis.ErrForbidden) {
					return fmt.Errorf("items[%d]: %w", i, err)
				}
				return trellis.WithField(fmt.Sprintf("items[%d]", i), err)
			}
			results[i] = toCheckResult(res)
			s.logDecision(c, item, res, start)
		}
	} else if len(reqs) > 0 {
		out, err := s.checker.CheckBulk(ctx, reqs)
		if err != nil {
			return err
		}
		for i, r := range out {
			results[i] = toCheckResult(r)
			s.logDecision(c, in.Items[i], r, start)
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"results": results})
}

type foundJSON struct {
	ID             string   `json:"id"`
	Permissionship string   `json:"permissionship"`
	MissingContext []string `json:"missingContext,omitempty"`
}

func toFound(in []engine.FoundObject) []foundJSON {
	out := make([]foundJSON, len(in))
	for i, f := range in {
		out[i] = foundJSON{ID: f.ID, Permissionship: string(f.Permissionship), MissingContext: f.MissingContext}
	}
	return out
}

func (s *Server) lookupResources(c echo.Context) error {
	var in struct {
		ResourceType string          `json:"resourceType"`
		Permission   string          `json:"permission"`
		Subject      string          `json:"subject"`
		Context      jsonObject      `json:"context"`
		Consistency  consistencyJSON `json:"consistency"`
		PageSize     *int            `json:"pageSize"`
		Cursor       string          `json:"cursor"`
	}
	if err := bind(c, &in); err != nil {
		return err
	}
	if in.ResourceType == "" {
		return trellis.Invalid("resourceType", "is required")
	}
	if err := engine.ValidateType("resourceType", in.ResourceType); err != nil {
		return err
	}
	if err := requiredRelation("permission", in.Permission); err != nil {
		return err
	}
	sub, err := engine.ParseSubjectRef("subject", in.Subject)
	if err != nil {
		return err
	}
	ctxMap, err := contextMap("context", in.Context)
	if err != nil {
		return err
	}
	cons, err := in.Consistency.parse("consistency")
	if err != nil {
		return err
	}
	size, err := pageSize("pageSize", in.PageSize, 100, 1000)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	org, bound := confined(c)
	if bound {
		if err := s.confine(ctx, org, "subject", sub.Object); err != nil {
			return err
		}
	}
	var after lookupCursor
	if in.Cursor != "" {
		if after, err = parseLookupCursor(in.Cursor); err != nil {
			return err
		}
		cons = engine.Consistency{Mode: engine.AtLeastAsFresh, Token: after.Revision}
	}
	all, revision, err := s.lookupAll(ctx, engine.LookupResourcesRequest{
		ResourceType: in.ResourceType, Permission: in.Permission, Subject: sub, Context: ctxMap, Consistency: cons,
	})
	if err != nil {
		return err
	}
	// pages of the whole answer, ordered by id: each resource once, whichever
	// paths reach it, and a page starts after the last id of the one before
	start, _ := slices.BinarySearchFunc(all, after.After, func(f engine.FoundObject, id string) int { return strings.Compare(f.ID, id) })
	if after.After != "" && start < len(all) && all[start].ID == after.After {
		start++
	}
	end := min(start+size, len(all))
	page := all[start:end]
	next := ""
	if end < len(all) {
		next = lookupCursor{Revision: cmp.Or(after.Revision, revision), After: page[len(page)-1].ID}.String()
	}
	if bound { // a page may come back shorter than pageSize: follow nextCursor
		if page, err = s.keepInside(ctx, org, in.ResourceType, page); err != nil {
			return err
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"resources": toFound(page), "nextCursor": nullable(next)})
}

// maxLookupResults bounds one lookup's whole answer, which every page of it
// reads again (a larger answer is a 422: narrow the question).
const maxLookupResults = 100_000

// lookupAll reads the whole answer of r, each resource once (HAS_PERMISSION
// over CONDITIONAL), ordered by id, and the revision it was read at.
func (s *Server) lookupAll(ctx context.Context, r engine.LookupResourcesRequest) ([]engine.FoundObject, string, error) {
	byID := map[string]int{}
	var all []engine.FoundObject
	revision := ""
	r.PageSize = 1000
	for {
		page, err := s.engine.LookupResources(ctx, r)
		if err != nil {
			return nil, "", err
		}
		if revision == "" {
			revision = page.LookedUpAt
			if revision != "" { // the rest of the scan reads what its first page read
				r.Consistency = engine.Consistency{Mode: engine.AtLeastAsFresh, Token: revision}
			}
		}
		for _, f := range page.Resources {
			if i, seen := byID[f.ID]; !seen {
				byID[f.ID] = len(all)
				all = append(all, f)
			} else if f.Permissionship == engine.HasPermission {
				all[i] = f
			}
		}
		if len(all) > maxLookupResults {
			return nil, "", trellis.Rule("too_many_results", "this lookup finds more than %d resources: narrow it (a resource type, permission or subject with fewer)", maxLookupResults)
		}
		if page.NextCursor == "" {
			break
		}
		r.Cursor = page.NextCursor
	}
	slices.SortFunc(all, func(a, b engine.FoundObject) int { return strings.Compare(a.ID, b.ID) })
	return all, revision, nil
}

// lookupCursor is where the next page of a lookup starts: after the id After,
// in the answer read at least as fresh as Revision.
type lookupCursor struct {
	Revision string `json:"r"`
	After    string `json:"a"`
}

func (c lookupCursor) String() string {
	raw, _ := json.Marshal(c)
	return "lr1." + base64.RawURLEncoding.EncodeToString(raw)
}

func parseLookupCursor(s string) (lookupCursor, error) {
	var c lookupCursor
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(s, "lr1."))
	if err != nil || !strings.HasPrefix(s, "lr1.") || json.Unmarshal(raw, &c) != nil || c.After == "" {
		return lookupCursor{}, trellis.Invalid("cursor", "is not a cursor this lookup returned")
	}
	return c, nil
}

func (s *Server) lookupSubjects(c echo.Context) error {
	var in struct {
		Resource        string          `json:"resource"`
		Permission      string          `json:"permission"`
		SubjectType     string          `json:"subjectType"`
		SubjectRelation string          `json:"subjectRelation"`
		Context         jsonObject      `json:"context"`
		Consistency     consistencyJSON `json:"consistency"`
	}
	if err := bind(c, &in); err != nil {
		return err
	}
	res, err := engine.ParseObjectRef("resource", in.Resource)
	if err != nil {
		return err
	}
	if err := requiredRelation("permission", in.Permission); err != nil {
		return err
	}
	if in.SubjectType == "" {
		return trellis.Invalid("subjectType", "is required")
	}
	if err := engine.ValidateType("subjectType", in.SubjectType); err != nil {
		return err
	}
	if in.SubjectRelation != "" {
		if err := engine.ValidateRelation("subjectRelation", in.SubjectRelation); err != nil {
			return err
		}
	}
	ctxMap, err := contextMap("context", in.Context)
	if err != nil {
		return err
	}
	cons, err := in.Consistency.parse("consistency")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	org, bound := confined(c)
	if bound {
		if err := s.confine(ctx, org, "resource", res); err != nil {
			return err
		}
	}
	found, err := s.engine.LookupSubjects(ctx, engine.LookupSubjectsRequest{
		Resource: res, Permission: in.Permission, SubjectType: in.SubjectType, SubjectRelation: in.SubjectRelation,
		Context: ctxMap, Consistency: cons,
	})
	if err != nil {
		return err
	}
	if bound {
		if found, err = s.keepInside(ctx, org, in.SubjectType, found); err != nil {
			return err
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"subjects": toFound(found)})
}

func (s *Server) explain(c echo.Context) error {
	var in checkJSON
	if err := bind(c, &in); err != nil {
		return err
	}
	req, err := in.parse()
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	org, bound := confined(c)
	if bound {
		if err := s.confineCheck(ctx, org, req); err != nil {
			return err
		}
	}
	ex, err := s.engine.Explain(ctx, req)
	if err != nil {
		return err
	}
	kept := make([][]engine.Relationship, 0, len(ex.Paths))
	for _, p := range ex.Paths {
		if bound { // a path through another tenant's objects is not shown to a bound key
			inside, err := s.pathInside(ctx, org, p)
			if err != nil {
				return err
			}
			if !inside {
				continue
			}
		}
		kept = append(kept, p)
	}
	paths, err := s.explainPaths(ctx, kept)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{
		"allowed": ex.Permissionship == engine.HasPermission, "permissionship": string(ex.Permissionship),
		"paths": paths, "checkedAt": ex.CheckedAt,
	})
}

func requiredRelation(field, v string) error {
	if v == "" {
		return trellis.Invalid(field, "is required")
	}
	return engine.ValidateRelation(field, v)
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
