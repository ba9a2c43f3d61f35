package directory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// Access review (API.md "Access review and audit", ADR 0017): who can access
// a resource and why, what a user holds where and why, and what a change would
// grant or revoke. Provider admins and platform auditors see everything; a
// customer auditor (view_audit on an organization) asks only about resources
// and users inside the organizations it audits, and its answers name nothing
// outside them: paths through outside objects and users outside are counted
// as "outside" instead.

// Path kinds: how a user comes to hold a permission.
const (
	PathDirect        = "direct"        // a relationship naming the user (a membership, an owner)
	PathGroup         = "group"         // through a group, nested groups included
	PathRole          = "role"          // through a custom role binding
	PathInherited     = "inherited"     // from a parent organization
	PathDelegation    = "delegation"    // through a delegated administration scope
	PathPlatform      = "platform"      // as platform (provider) staff
	PathImpersonation = "impersonation" // acting as another user through a live impersonation
)

// pathKinds is the precedence of kinds: a path is of the first kind it shows.
var pathKinds = []string{PathImpersonation, PathDelegation, PathInherited, PathPlatform, PathGroup, PathRole, PathDirect}

// AccessStep is one stored relationship of a path.
type AccessStep struct {
	Resource  string     `json:"resource"`
	Relation  string     `json:"relation"`
	Subject   string     `json:"subject"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	Caveat    string     `json:"caveat,omitempty"`
}

// AccessPath explains why a user holds a permission: the chain of stored
// relationships from the resource to the user (the explain chain), its kind
// and what it draws on. Outside marks a path through objects outside the
// caller's organizations: only its kind and expiry are told.
type AccessPath struct {
	Kind          string       `json:"kind"`
	Steps         []AccessStep `json:"steps,omitempty"`
	Outside       bool         `json:"outside,omitempty"`
	Group         string       `json:"group,omitempty"`         // the first group drawn on
	InheritedFrom string       `json:"inheritedFrom,omitempty"` // the ancestor organization granting it
	Delegations   []string     `json:"delegations,omitempty"`   // the live delegations granting its scope
	Impersonation string       `json:"impersonation,omitempty"`
	ExpiresAt     *time.Time   `json:"expiresAt,omitempty"` // the earliest expiry along it
}

// accessScope is what a caller of the access review may see.
type accessScope struct {
	all     bool
	orgs    map[string]bool // organizations audited (customer auditors)
	users   map[string]bool // users known inside or outside
	objects map[engine.ObjectRef]bool
	dels    map[string][]store.Delegation // organization → its delegations
}

// accessScope decides who may use the access review: provider admins and
// platform auditors see everything; any other principal the organizations on
// which it holds view_audit (within its token's or key's organization,
// through delegations too); impersonations never (an impersonation grants
// plain access, not review).
//
// Provider API keys reach here only with the access:read scope (the API
// refuses other keys on /v1/access/*, api/apikeys.go) and act as the
// provider: they see everything. A key bound to an organization may hold
// only the check scope, so none reaches the review.
func (s *Service) accessScope(ctx context.Context, tx store.Tx, p Principal) (*accessScope, error) {
	sc := &accessScope{orgs: map[string]bool{}, users: map[string]bool{}, objects: map[engine.ObjectRef]bool{}, dels: map[string][]store.Delegation{}}
	if p.Impersonation != "" || p.Impersonator != "" {
		return nil, fmt.Errorf("%w: the access review is not available while impersonating", trellis.ErrForbidden)
	}
	if err := s.requireAuditor(ctx, p); err == nil {
		sc.all = true
		return sc, nil
	} else if !errors.Is(err, trellis.ErrForbidden) {
		return nil, err
	}
	cursor := ""
	for {
		page, err := s.graph.LookupResources(ctx, engine.LookupResourcesRequest{
			ResourceType: "organization", Permission: permViewAudit, Subject: p.Subject(),
			Consistency: engine.Consistency{Mode: engine.FullyConsistent}, PageSize: 1000, Cursor: cursor,
		})
		if err != nil {
			return nil, err
		}
		for _, f := range page.Resources {
			if f.Permissionship != engine.HasPermission {
				continue
			}
			org, err := tx.GetOrg(ctx, f.ID)
			if errors.Is(err, trellis.ErrNotFound) {
				continue
			} else if err != nil {
				return nil, err
			}
			if ok, err := s.can(ctx, tx, p, org, permViewAudit); err != nil {
				return nil, err
			} else if ok {
				sc.orgs[org.ID] = true
			}
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if len(sc.orgs) == 0 {
		return nil, fmt.Errorf("%w: the access review needs view_audit on an organization", trellis.ErrForbidden)
	}
	return sc, nil
}

// userInside: a user is inside the scope when it is a member (any status) of
// an organization the caller audits.
func (sc *accessScope) userInside(ctx context.Context, tx store.Tx, user string) (bool, error) {
	if sc.all {
		return true, nil
	}
	if v, ok := sc.users[user]; ok {
		return v, nil
	}
	ms, err := tx.UserMemberships(ctx, user)
	if err != nil {
		return false, err
	}
	in := slices.ContainsFunc(ms, func(m store.Membership) bool { return sc.orgs[m.Org] })
	sc.users[user] = in
	return in, nil
}

// objectInside: an organization audited, a user inside, a group, role or
// service account of an organization audited, or any other object whose
// organizations (engine.Anchors) are all audited. The platform never is.
func (s *Service) objectInside(ctx context.Context, tx store.Tx, sc *accessScope, obj engine.ObjectRef) (bool, error) {
	if sc.all || obj.ID == "*" {
		return true, nil
	}
	if v, ok := sc.objects[obj]; ok {
		return v, nil
	}
	var in bool
	var err error
	switch obj.Type {
	case "organization":
		in = sc.orgs[obj.ID]
	case "user":
		in, err = sc.userInside(ctx, tx, obj.ID)
	case "platform":
	case "group":
		var g store.Group
		if g, err = tx.GetGroup(ctx, obj.ID); err == nil {
			in = sc.orgs[g.Org]
		}
	case "role":
		var r store.Role
		if r, err = tx.GetRole(ctx, obj.ID); err == nil {
			in = sc.orgs[r.Org]
		}
	case "service_account":
		var a store.ServiceAccount
		if a, err = tx.GetServiceAccount(ctx, obj.ID); err == nil {
			in = sc.orgs[a.Org]
		}
	default:
		var orgs []string
		var ok bool
		orgs, ok, err = engine.Anchors(ctx, s.graph, obj)
		in = err == nil && ok && len(orgs) > 0
		for _, o := range orgs {
			in = in && sc.orgs[o]
		}
	}
	if errors.Is(err, trellis.ErrNotFound) {
		in, err = false, nil
	}
	if err != nil {
		return false, err
	}
	sc.objects[obj] = in
	return in, nil
}

// requireInside answers 404 for a resource outside the caller's scope, as if
// unknown.
func (s *Service) requireInside(ctx context.Context, tx store.Tx, sc *accessScope, field string, obj engine.ObjectRef) error {
	in, err := s.objectInside(ctx, tx, sc, obj)
	if err != nil || in {
		return err
	}
	return fmt.Errorf("%w: %s: %s", trellis.ErrNotFound, field, obj)
}

// delegatedRelations maps the organization relations delegations write to
// their scope.
var delegatedRelations = func() map[string]string {
	out := map[string]string{}
	for sc, d := range delegationScopes {
		out[d.subtree], out[d.local] = sc, sc
	}
	return out
}()

// describe turns an explain chain into an AccessPath for the caller.
func (s *Service) describe(ctx context.Context, tx store.Tx, sc *accessScope, chain []engine.Relationship) (AccessPath, error) {
	kinds := map[string]bool{}
	var path AccessPath
	outside := false
	for _, r := range chain {
		step := AccessStep{Resource: r.Resource.String(), Relation: r.Relation, Subject: r.Subject.String(), ExpiresAt: r.ExpiresAt}
		if r.Caveat != nil {
			step.Caveat = r.Caveat.Name
		}
		path.Steps = append(path.Steps, step)
		if r.ExpiresAt != nil && (path.ExpiresAt == nil || r.ExpiresAt.Before(*path.ExpiresAt)) {
			at := *r.ExpiresAt
			path.ExpiresAt = &at
		}
		for _, obj := range []engine.ObjectRef{r.Resource, r.Subject.Object} {
			in, err := s.objectInside(ctx, tx, sc, obj)
			if err != nil {
				return path, err
			}
			outside = outside || !in
		}
		switch {
		case r.Resource.Type == "impersonation":
			kinds[PathImpersonation] = true
			path.Impersonation = r.Resource.ID
		case r.Resource.Type == "organization" && delegatedRelations[r.Relation] != "":
			kinds[PathDelegation] = true
			ids, err := s.delegationsFor(ctx, tx, sc, r)
			if err != nil {
				return path, err
			}
			path.Delegations = append(path.Delegations, ids...)
		case r.Resource.Type == "organization" && (r.Relation == "parent" || r.Relation == "lineage"):
			kinds[PathInherited] = true
			path.InheritedFrom = r.Subject.Object.ID // the last ancestor followed
		case r.Relation == "platform" || r.Resource.Type == "platform":
			kinds[PathPlatform] = true
		case r.Relation == "binding" || r.Resource.Type == "role_binding":
			kinds[PathRole] = true
		}
		if r.Subject.Object.Type == "group" && r.Subject.Relation == "member" {
			kinds[PathGroup] = true
			if path.Group == "" {
				path.Group = r.Subject.Object.ID
			}
		}
	}
	path.Kind = PathDirect
	for _, k := range pathKinds {
		if kinds[k] {
			path.Kind = k
			break
		}
	}
	if outside {
		path = AccessPath{Kind: path.Kind, Outside: true, ExpiresAt: path.ExpiresAt}
	}
	return path, nil
}

// delegationsFor names the live delegations that write relationship r (a
// delegated scope on an organization).
func (s *Service) delegationsFor(ctx context.Context, tx store.Tx, sc *accessScope, r engine.Relationship) ([]string, error) {
	ds, ok := sc.dels[r.Resource.ID]
	if !ok {
		var err error
		if ds, err = tx.ListDelegations(ctx, r.Resource.ID); err != nil {
			return nil, err
		}
		sc.dels[r.Resource.ID] = ds
	}
	var out []string
	for _, d := range ds {
		if !s.live(d) || subjectOf(d.Grantee) != r.Subject {
			continue
		}
		for _, scope := range d.Scopes {
			rel := delegationScopes[scope].local
			if d.Subtree {
				rel = delegationScopes[scope].subtree
			}
			if rel == r.Relation {
				out = append(out, d.ID)
				break
			}
		}
	}
	return out, nil
}

// WhoCanQuery is the body of POST /v1/access/who-can.
type WhoCanQuery struct {
	Resource   engine.ObjectRef
	Permission string
	PageSize   int
	Cursor     string
}

// UserAccessPaths is one user who can, with every path explaining why.
type UserAccessPaths struct {
	User string       `json:"user"`
	Via  []AccessPath `json:"via"`
}

// WhoCanTotals counts the whole answer, every page.
type WhoCanTotals struct {
	Users   int            `json:"users"`   // users listed, over every page
	Outside int            `json:"outside"` // users outside the caller's organizations, not listed
	ByKind  map[string]int `json:"byKind"`  // users holding it through at least one path of each kind (outside ones too)
}

// WhoCanResult answers POST /v1/access/who-can.
type WhoCanResult struct {
	Users      []UserAccessPaths `json:"users"`
	NextCursor string            `json:"nextCursor"`
	Totals     WhoCanTotals      `json:"totals"`
	CheckedAt  string            `json:"checkedAt,omitempty"`
}

// WhoCan lists every user who holds permission on resource, groups, nested
// groups, parent organizations and delegations expanded (SpiceDB's subject
// lookup), plus the actors of live impersonations of those users that reach
// the resource, each with the paths explaining why; complete, sorted by user
// id and paged. Customer auditors see only users and paths inside the
// organizations they audit; the rest is counted as outside.
func (s *Service) WhoCan(ctx context.Context, p Principal, q WhoCanQuery) (WhoCanResult, error) {
	out := WhoCanResult{Users: []UserAccessPaths{}, Totals: WhoCanTotals{ByKind: map[string]int{}}}
	size, err := pageSize(q.PageSize)
	if err != nil {
		return out, err
	}
	after, err := decodeCursor("cursor", q.Cursor)
	if err != nil {
		return out, err
	}
	err = s.read(ctx, func(tx store.Tx) error {
		sc, err := s.accessScope(ctx, tx, p)
		if err != nil {
			return err
		}
		if err := s.requireInside(ctx, tx, sc, "resource", q.Resource); err != nil {
			return err
		}
		holders, err := engine.UsersWith(ctx, s.graph, q.Resource, q.Permission)
		if err != nil {
			return err
		}
		paths := map[string][]AccessPath{}
		for _, u := range holders {
			ex, err := s.graph.Explain(ctx, engine.CheckRequest{Resource: q.Resource, Permission: q.Permission,
				Subject: subj("user", u), Consistency: engine.Consistency{Mode: engine.FullyConsistent}})
			if err != nil {
				return err
			}
			out.CheckedAt = ex.CheckedAt
			seen := map[string]bool{}
			for _, chain := range ex.Paths {
				if k := chainKey(chain); seen[k] {
					continue // the same chain reached through two branches of the rewrite
				} else {
					seen[k] = true
				}
				ap, err := s.describe(ctx, tx, sc, chain)
				if err != nil {
					return err
				}
				paths[u] = append(paths[u], ap)
			}
		}
		if err := s.impersonators(ctx, tx, sc, q, paths); err != nil {
			return err
		}
		users := make([]string, 0, len(paths))
		for u := range paths {
			users = append(users, u)
		}
		slices.Sort(users)
		for _, u := range users {
			seen := map[string]bool{}
			for _, ap := range paths[u] {
				if !seen[ap.Kind] {
					seen[ap.Kind] = true
					out.Totals.ByKind[ap.Kind]++
				}
			}
			in, err := sc.userInside(ctx, tx, u)
			if err != nil {
				return err
			}
			if !in {
				out.Totals.Outside++
				continue
			}
			out.Totals.Users++
			if u <= after || len(out.Users) > size {
				continue
			}
			out.Users = append(out.Users, UserAccessPaths{User: "user:" + u, Via: paths[u]})
		}
		if len(out.Users) > size {
			out.Users = out.Users[:size]
			out.NextCursor = encodeCursor(strings.TrimPrefix(out.Users[size-1].User, "user:"))
		}
		return nil
	})
	return out, err
}

// impersonators adds the actors of live impersonations whose target holds the
// permission and whose organization's subtree holds the resource: they can
// act on it as the target (within the impersonation's scope).
func (s *Service) impersonators(ctx context.Context, tx store.Tx, sc *accessScope, q WhoCanQuery, paths map[string][]AccessPath) error {
	anchors, ok, err := engine.Anchors(ctx, s.graph, q.Resource)
	if err != nil || !ok {
		return err // an unconfined resource is reached by no impersonation
	}
	orgs := map[string]bool{}
	for _, a := range anchors {
		path, ok, err := engine.OrgPath(ctx, s.graph, a)
		if err != nil {
			return err
		}
		if ok {
			for _, o := range path {
				orgs[o] = true
			}
		}
	}
	ids := make([]string, 0, len(orgs))
	for o := range orgs {
		ids = append(ids, o)
	}
	slices.Sort(ids)
	gate := engine.ImpersonationGate{Engine: s.graph}
	for _, o := range ids {
		ims, err := tx.ListImpersonations(ctx, o)
		if err != nil {
			return err
		}
		for _, im := range ims {
			target := paths[im.Target]
			if len(target) == 0 || s.impersonationStatus(im) != store.ImpersonationActive {
				continue
			}
			live, err := gate.Live(ctx, subj("user", im.Actor), subj("user", im.Target), q.Resource, q.Permission)
			if err != nil {
				return err
			}
			if !live {
				continue
			}
			ref := engine.ObjectRef{Type: "impersonation", ID: im.ID}
			chain := []engine.Relationship{
				rel(ref, "actor", subj("user", im.Actor)),
				rel(ref, "target", subj("user", im.Target)),
				rel(ref, "org", engine.SubjectRef{Object: orgRef(im.Org)}),
			}
			chain[0].ExpiresAt = im.ExpiresAt
			ap, err := s.describe(ctx, tx, sc, chain)
			if err != nil {
				return err
			}
			paths[im.Actor] = append(paths[im.Actor], ap)
		}
	}
	return nil
}

// RoleSource is one role a user holds in an organization and where it comes from.
type RoleSource struct {
	Role string       `json:"role"`
	Via  []AccessPath `json:"via"` // direct (its membership) or group (Group names it)
}

// PermissionSource is one organization permission a user holds, with every
// path granting it.
type PermissionSource struct {
	Permission string       `json:"permission"`
	Via        []AccessPath `json:"via"`
}

// OrgAccess is a user's effective access in one organization.
type OrgAccess struct {
	Organization string             `json:"organization"`
	Membership   *string            `json:"membership"` // its membership's status; null: none
	Roles        []RoleSource       `json:"roles"`
	Permissions  []PermissionSource `json:"permissions"`
}

// ActiveImpersonation is a live impersonation the user acts through.
type ActiveImpersonation struct {
	ID           string     `json:"id"`
	Target       string     `json:"target"`
	Organization string     `json:"organization"`
	Scopes       []string   `json:"scopes"`
	ExpiresAt    *time.Time `json:"expiresAt"`
}

// UserAccess answers GET /v1/access/users/{user}.
type UserAccess struct {
	User           string                `json:"user"`
	Organizations  []OrgAccess           `json:"organizations"`
	Impersonations []ActiveImpersonation `json:"impersonations"`
}

// EffectiveAccess lists, per organization (one with org set), the roles a
// user holds (its membership's and its groups') and the organization
// permissions it holds, each with the paths granting it: direct, group,
// inherited from a parent organization, delegation (ids and expiry), role,
// platform; and the live impersonations it acts through. Organizations are
// those where it holds any permission or a membership. Customer auditors ask
// only about users inside the organizations they audit (404 otherwise) and
// see only those organizations.
func (s *Service) EffectiveAccess(ctx context.Context, p Principal, userRef, org string) (UserAccess, error) {
	out := UserAccess{Organizations: []OrgAccess{}, Impersonations: []ActiveImpersonation{}}
	err := s.read(ctx, func(tx store.Tx) error {
		sc, err := s.accessScope(ctx, tx, p)
		if err != nil {
			return err
		}
		id := strings.TrimPrefix(userRef, "user:")
		if _, err := tx.GetUser(ctx, id); err != nil {
			return err
		}
		if in, err := sc.userInside(ctx, tx, id); err != nil {
			return err
		} else if !in {
			return notFound("user", id)
		}
		out.User = "user:" + id
		user := subj("user", id)
		orgs := map[string]bool{}
		if org != "" {
			o, err := resolveOrg(ctx, tx, org)
			if err != nil {
				return err
			}
			if err := s.requireInside(ctx, tx, sc, "organization", orgRef(o.ID)); err != nil {
				return err
			}
			orgs[o.ID] = true
		} else {
			ms, err := tx.UserMemberships(ctx, id)
			if err != nil {
				return err
			}
			for _, m := range ms {
				orgs[m.Org] = true
			}
			for _, perm := range []string{permAccess, permAdminister} {
				cursor := ""
				for {
					page, err := s.graph.LookupResources(ctx, engine.LookupResourcesRequest{ResourceType: "organization", Permission: perm, Subject: user,
						Consistency: engine.Consistency{Mode: engine.FullyConsistent}, PageSize: 1000, Cursor: cursor})
					if err != nil {
						return err
					}
					for _, f := range page.Resources {
						orgs[f.ID] = true
					}
					if cursor = page.NextCursor; cursor == "" {
						break
					}
				}
			}
		}
		ids := make([]string, 0, len(orgs))
		for o := range orgs {
			if in, err := s.objectInside(ctx, tx, sc, orgRef(o)); err != nil {
				return err
			} else if in {
				ids = append(ids, o)
			}
		}
		slices.Sort(ids)
		for _, o := range ids {
			oa, err := s.orgAccess(ctx, tx, sc, o, id)
			if err != nil {
				return err
			}
			out.Organizations = append(out.Organizations, oa)
		}
		refs, err := engine.ReadAll(ctx, s.graph, engine.RelationshipFilter{ResourceType: "impersonation", Relation: "actor", Subject: &engine.SubjectFilter{Type: "user", ID: id}}, 0)
		if err != nil {
			return err
		}
		for _, r := range refs {
			im, err := tx.GetImpersonation(ctx, r.Resource.ID)
			if errors.Is(err, trellis.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			if s.impersonationStatus(im) != store.ImpersonationActive || im.Actor != id {
				continue
			}
			if in, err := s.objectInside(ctx, tx, sc, orgRef(im.Org)); err != nil || !in {
				if err != nil {
					return err
				}
				continue
			}
			out.Impersonations = append(out.Impersonations, ActiveImpersonation{ID: im.ID, Target: "user:" + im.Target, Organization: im.Org, Scopes: im.Scopes, ExpiresAt: im.ExpiresAt})
		}
		return nil
	})
	return out, err
}

// orgAccess is one organization's entry of EffectiveAccess.
func (s *Service) orgAccess(ctx context.Context, tx store.Tx, sc *accessScope, org, user string) (OrgAccess, error) {
	out := OrgAccess{Organization: org, Roles: []RoleSource{}, Permissions: []PermissionSource{}}
	roles := map[string][]AccessPath{}
	var order []string
	addRole := func(role string, via AccessPath) {
		if _, ok := roles[role]; !ok {
			order = append(order, role)
		}
		roles[role] = append(roles[role], via)
	}
	m, err := tx.GetMembership(ctx, org, user)
	switch {
	case errors.Is(err, trellis.ErrNotFound):
	case err != nil:
		return out, err
	default:
		status := m.Status
		out.Membership = &status
		for _, r := range m.Roles {
			addRole(r, AccessPath{Kind: PathDirect})
		}
	}
	groups, err := tx.ListGroups(ctx, org)
	if err != nil {
		return out, err
	}
	for _, g := range groups {
		if len(g.Roles) == 0 {
			continue
		}
		res, err := s.graph.Check(ctx, engine.CheckRequest{Resource: groupRef(g.ID), Permission: "member", Subject: subj("user", user), Consistency: engine.Consistency{Mode: engine.FullyConsistent}})
		if err != nil {
			return out, err
		}
		if res.Allowed() {
			for _, r := range g.Roles {
				addRole(r, AccessPath{Kind: PathGroup, Group: g.ID})
			}
		}
	}
	for _, r := range order {
		out.Roles = append(out.Roles, RoleSource{Role: r, Via: roles[r]})
	}
	for _, perm := range s.catalogue {
		ex, err := s.graph.Explain(ctx, engine.CheckRequest{Resource: orgRef(org), Permission: perm, Subject: subj("user", user), Consistency: engine.Consistency{Mode: engine.FullyConsistent}})
		if err != nil {
			return out, err
		}
		if ex.Permissionship != engine.HasPermission {
			continue
		}
		ps := PermissionSource{Permission: perm, Via: []AccessPath{}}
		seen := map[string]bool{}
		for _, chain := range ex.Paths {
			if k := chainKey(chain); seen[k] {
				continue
			} else {
				seen[k] = true
			}
			ap, err := s.describe(ctx, tx, sc, chain)
			if err != nil {
				return out, err
			}
			ps.Via = append(ps.Via, ap)
		}
		out.Permissions = append(out.Permissions, ps)
	}
	return out, nil
}

// blastMaxListed bounds the triples a blast radius lists on each side (the
// totals count them all).
const blastMaxListed = 1000

// blastMaxObjects bounds the objects whose permissions a blast radius compares.
const blastMaxObjects = 5000

// Triple is one (subject, resource, permission) gained or lost.
type Triple struct {
	Subject    string `json:"subject"`
	Resource   string `json:"resource"`
	Permission string `json:"permission"`
}

// BlastTotals counts a blast radius.
type BlastTotals struct {
	Gained        int `json:"gained"`
	Lost          int `json:"lost"`
	Outside       int `json:"outside"`       // triples outside the caller's organizations, counted in neither list
	Objects       int `json:"objects"`       // objects whose permissions were compared
	Relationships int `json:"relationships"` // relationships loaded into the scratch engine
}

// BlastRadius answers POST /v1/access/blast-radius.
type BlastRadius struct {
	Gained    []Triple    `json:"gained"`
	Lost      []Triple    `json:"lost"`
	Totals    BlastTotals `json:"totals"`
	Truncated bool        `json:"truncated,omitempty"` // the lists hold the first blastMaxListed of each side
}

// BlastRadius computes, without applying them, which (user, resource,
// permission) triples updates (as a raw relationship write) would grant or
// revoke, for every permission of the system and app definitions: on a
// scratch engine holding only what the affected objects depend on
// (engine.Blast), bounded like a move preview (MovePreviewTimeout: 503;
// MovePreviewMaxRelationships, and 5,000 objects: 422), and sharing the move
// previews' concurrency bound. Customer auditors weigh only updates whose
// objects lie inside the organizations they audit (404 otherwise); triples
// outside them are counted, not listed.
func (s *Service) BlastRadius(ctx context.Context, p Principal, updates []engine.RelationshipUpdate) (BlastRadius, error) {
	out := BlastRadius{Gained: []Triple{}, Lost: []Triple{}}
	var sc *accessScope
	err := s.read(ctx, func(tx store.Tx) error {
		var err error
		if sc, err = s.accessScope(ctx, tx, p); err != nil {
			return err
		}
		for i, u := range updates {
			field := fmt.Sprintf("updates[%d].relationship", i)
			if err := s.requireInside(ctx, tx, sc, field+".resource", u.Relationship.Resource); err != nil {
				return err
			}
			if err := s.requireInside(ctx, tx, sc, field+".subject", u.Relationship.Subject.Object); err != nil {
				return err
			}
		}
		updates, err = s.withLineage(ctx, tx, updates)
		return err
	})
	if err != nil {
		return out, err
	}
	return s.blast(ctx, sc, updates)
}

// withLineage adds to raw updates the lineage changes their organization#parent
// updates imply, as a move writes them: govern and is_suspended read the
// lineage, so a re-parenting weighed without it would show no change.
func (s *Service) withLineage(ctx context.Context, tx store.Tx, updates []engine.RelationshipUpdate) ([]engine.RelationshipUpdate, error) {
	out := slices.Clip(updates)
	for _, u := range updates {
		r := u.Relationship
		if r.Resource.Type != "organization" || r.Relation != "parent" || r.Subject.Object.Type != "organization" || r.Subject.Relation != "" {
			continue
		}
		org, err := tx.GetOrg(ctx, r.Resource.ID)
		if errors.Is(err, trellis.ErrNotFound) {
			continue
		} else if err != nil {
			return nil, err
		}
		var above []string // the new ancestors
		if u.Operation != engine.OpDelete {
			parent, err := tx.GetOrg(ctx, r.Subject.Object.ID)
			if errors.Is(err, trellis.ErrNotFound) {
				continue
			} else if err != nil {
				return nil, err
			}
			if above, err = s.path(ctx, tx, parent); err != nil {
				return nil, err
			}
		} else if org.Parent != r.Subject.Object.ID {
			continue // deletes a parent link the rows do not have
		}
		base, err := s.path(ctx, tx, org)
		if err != nil {
			return nil, err
		}
		orgs, err := subtree(ctx, tx, org)
		if err != nil {
			return nil, err
		}
		out = append(out, relineage(orgs, base[:len(base)-1], above)...)
	}
	return dedupe(out), nil
}

// blast weighs updates for a caller of scope sc (BlastRadius, BlastRadiusOf).
func (s *Service) blast(ctx context.Context, sc *accessScope, updates []engine.RelationshipUpdate) (BlastRadius, error) {
	out := BlastRadius{Gained: []Triple{}, Lost: []Triple{}}
	leave, err := s.moves.enter(store.Org{ID: "blast:" + newID("br")}, s.cfg.MovePreviews)
	if err != nil {
		return out, err
	}
	defer leave()
	text, err := s.schemaText(ctx)
	if err != nil {
		return out, err
	}
	bounded, cancel := context.WithTimeout(ctx, s.cfg.MovePreviewTimeout)
	defer cancel()
	var inside []Triple // gathered first, weighed against the scope after
	var sides []bool
	stats, err := engine.Blast(bounded, s.graph, text, updates, engine.BlastLimits{MaxObjects: blastMaxObjects, MaxRelationships: s.cfg.MovePreviewMaxRelationships},
		func(gained bool, c engine.AccessChange) error {
			inside = append(inside, Triple{Subject: c.Subject.String(), Resource: c.Resource.String(), Permission: c.Permission})
			sides = append(sides, gained)
			return nil
		})
	switch {
	case errors.Is(err, engine.ErrTooManyObjects), errors.Is(err, engine.ErrTooManyRelationships):
		return out, trellis.Rule("blast_radius_too_large",
			"the change reaches more than %d objects or depends on more than %d relationships, the most a blast radius computes: split it into smaller changes (%v)",
			blastMaxObjects, s.cfg.MovePreviewMaxRelationships, err)
	case err != nil && ctx.Err() == nil && errors.Is(bounded.Err(), context.DeadlineExceeded):
		return out, trellis.Unavailable("blast_radius_timeout",
			"the blast radius was not computed within %s: the change reaches too much of the graph or the server is busy; retry later or split the change", s.cfg.MovePreviewTimeout)
	case err != nil:
		return out, err
	}
	out.Totals.Objects, out.Totals.Relationships = stats.Objects, stats.Relationships
	return out, s.read(ctx, func(tx store.Tx) error {
		for i, t := range inside {
			res, _ := engine.ParseObjectRef("resource", t.Resource)
			in, err := s.objectInside(ctx, tx, sc, res)
			if err != nil {
				return err
			}
			if in {
				in, err = sc.userInside(ctx, tx, strings.TrimPrefix(t.Subject, "user:"))
				if err != nil {
					return err
				}
			}
			list, total := &out.Lost, &out.Totals.Lost
			if sides[i] {
				list, total = &out.Gained, &out.Totals.Gained
			}
			switch {
			case !in:
				out.Totals.Outside++
			case len(*list) < blastMaxListed:
				*total++
				*list = append(*list, t)
			default:
				*total++
				out.Truncated = true
			}
		}
		return nil
	})
}

// chainKey identifies an explain chain by its relationships.
func chainKey(chain []engine.Relationship) string {
	parts := make([]string, len(chain))
	for i, r := range chain {
		parts[i] = r.String()
	}
	return strings.Join(parts, " ")
}
