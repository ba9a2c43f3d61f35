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

// delegationScope is one administration area a delegation can grant: the
// organization relations it writes (subtree / this organization only) and the
// permission that gates its API area.
type delegationScope struct {
	subtree, local, perm string
}

// DelegationScopes are the scopes of API.md, in order.
var DelegationScopes = []string{"members", "roles", "sso", "scim", "branding", "audit", "billing"}

var delegationScopes = map[string]delegationScope{
	"members":  {"members_admin", "members_local", permManageMembers},
	"roles":    {"roles_admin", "roles_local", permManageRoles},
	"sso":      {"sso_admin", "sso_local", "manage_sso"},
	"scim":     {"scim_admin", "scim_local", "manage_scim"},
	"branding": {"branding_admin", "branding_local", permManageBrand},
	"audit":    {"audit_viewer", "audit_local", permViewAudit},
	"billing":  {"billing_admin", "billing_local", "manage_billing"},
}

// Delegation is a delegation as clients see it.
type Delegation struct {
	ID           string       `json:"id"`
	Organization string       `json:"organization"`
	Grantee      string       `json:"grantee"`
	Scopes       []string     `json:"scopes"`
	Subtree      bool         `json:"subtree"`
	ExpiresAt    *time.Time   `json:"expiresAt,omitempty"`
	Status       string       `json:"status"` // pending | active | expired | revoked
	GrantedBy    string       `json:"grantedBy"`
	Via          []string     `json:"via"` // every delegation the grantor drew its scopes from; [] = its own right
	Reason       string       `json:"reason,omitempty"`
	CreatedAt    time.Time    `json:"createdAt"`
	ApprovedBy   string       `json:"approvedBy,omitempty"`
	ApprovedAt   *time.Time   `json:"approvedAt,omitempty"`
	RevokedBy    string       `json:"revokedBy,omitempty"`
	RevokedAt    *time.Time   `json:"revokedAt,omitempty"`
	Chain        []Delegation `json:"chain,omitempty"`   // GET one: the delegations it was granted through, nearest first
	Granted      []string     `json:"granted,omitempty"` // GET one: delegations granted through it
	Revoked      []string     `json:"revoked,omitempty"` // DELETE: every delegation the revocation ended
}

// CreateDelegation is the body of POST /v1/organizations/{org}/delegations.
type CreateDelegation struct {
	Grantee         string     `json:"grantee"`
	Scopes          []string   `json:"scopes"`
	Subtree         bool       `json:"subtree"`
	ExpiresAt       *time.Time `json:"expiresAt"`
	RequireApproval bool       `json:"requireApproval"`
	Reason          string     `json:"reason"`
}

func (s *Service) delegationView(d store.Delegation) Delegation {
	v := Delegation{ID: d.ID, Organization: d.Org, Grantee: d.Grantee, Scopes: d.Scopes, Subtree: d.Subtree,
		ExpiresAt: d.ExpiresAt, Status: s.delegationStatus(d), GrantedBy: d.GrantedBy, Reason: d.Reason,
		CreatedAt: d.CreatedAt, ApprovedBy: d.ApprovedBy, ApprovedAt: d.ApprovedAt, RevokedBy: d.RevokedBy, RevokedAt: d.RevokedAt,
		Via: append([]string{}, d.Via...)}
	return v
}

func (s *Service) delegationStatus(d store.Delegation) string {
	if d.Status != store.DelegationRevoked && d.ExpiresAt != nil && !s.cfg.Now().Before(*d.ExpiresAt) {
		return "expired"
	}
	return d.Status
}

// live reports whether d grants its scopes now.
func (s *Service) live(d store.Delegation) bool {
	return s.delegationStatus(d) == store.DelegationActive
}

// granteeSubject parses a grantee: user:<id>, group:<id>[#member] or
// organization:<id|slug>#admin; it returns the canonical form and the subject.
func granteeSubject(ctx context.Context, tx store.Tx, org store.Org, grantee string) (string, engine.SubjectRef, error) {
	typ, rest, ok := strings.Cut(grantee, ":")
	id, relation, _ := strings.Cut(rest, "#")
	if !ok || id == "" {
		return "", engine.SubjectRef{}, trellis.Invalid("grantee", "must be user:<id>, group:<id> or organization:<id>#admin, got %q", grantee)
	}
	switch {
	case typ == "user" && relation == "":
		if _, err := tx.GetUser(ctx, id); errors.Is(err, trellis.ErrNotFound) {
			return "", engine.SubjectRef{}, trellis.Invalid("grantee", "no user %q", id)
		} else if err != nil {
			return "", engine.SubjectRef{}, err
		}
		return "user:" + id, subj("user", id), nil
	case typ == "group" && (relation == "" || relation == "member"):
		g, err := tx.GetGroup(ctx, id)
		if errors.Is(err, trellis.ErrNotFound) {
			return "", engine.SubjectRef{}, trellis.Invalid("grantee", "no group %q", id)
		} else if err != nil {
			return "", engine.SubjectRef{}, err
		}
		return "group:" + g.ID, groupMembers(g.ID), nil
	case typ == "organization" && relation == "admin":
		other, err := resolveOrg(ctx, tx, id)
		if errors.Is(err, trellis.ErrNotFound) {
			return "", engine.SubjectRef{}, trellis.Invalid("grantee", "no organization %q", id)
		} else if err != nil {
			return "", engine.SubjectRef{}, err
		}
		if other.ID == org.ID {
			return "", engine.SubjectRef{}, trellis.Invalid("grantee", "an organization's admins already administer it")
		}
		return "organization:" + other.ID + "#admin", subjectOf("organization:" + other.ID + "#admin"), nil
	}
	return "", engine.SubjectRef{}, trellis.Invalid("grantee", "must be user:<id>, group:<id> or organization:<id>#admin, got %q", grantee)
}

// granteeVisible: a user or group grantee must be one the grantor can see (a
// user it may enrol in org — see mayEnrol —, a group of an organization it
// can see); others answer as unknown ones do.
func (s *Service) granteeVisible(ctx context.Context, tx store.Tx, p Principal, org store.Org, grantee string) error {
	typ, id, _ := strings.Cut(grantee, ":")
	switch typ {
	case "user":
		u, err := tx.GetUser(ctx, id)
		if err != nil {
			return err
		}
		if ok, err := s.mayEnrol(ctx, tx, p, org, u); err != nil || ok {
			return err
		}
		return trellis.Invalid("grantee", "no user %q", id)
	case "group":
		g, err := tx.GetGroup(ctx, id)
		if err != nil {
			return err
		}
		org, err := tx.GetOrg(ctx, g.Org)
		if err != nil {
			return err
		}
		if ok, err := s.visible(ctx, tx, p, org); err != nil || ok {
			return err
		}
		return trellis.Invalid("grantee", "no group %q", id)
	}
	return nil
}

// validScopes checks and deduplicates delegation scopes.
func validScopes(in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, trellis.Invalid("scopes", "at least one of %s is required", strings.Join(DelegationScopes, ", "))
	}
	var out []string
	for i, sc := range in {
		if _, ok := delegationScopes[sc]; !ok {
			return nil, trellis.Invalid(fmt.Sprintf("scopes[%d]", i), "unknown scope %q (one of %s)", sc, strings.Join(DelegationScopes, ", "))
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return slices.Index(DelegationScopes, a) - slices.Index(DelegationScopes, b) })
	return out, nil
}

func scopePerms(scopes []string) []string {
	out := make([]string, len(scopes))
	for i, sc := range scopes {
		out[i] = delegationScopes[sc].perm
	}
	return out
}

// holdsGrantee reports whether p is, or belongs to, a delegation's grantee.
func (s *Service) holdsGrantee(ctx context.Context, p Principal, grantee string) (bool, error) {
	if p.Kind != KindUser && p.Kind != KindServiceAccount {
		return false, nil
	}
	if grantee == p.Actor() {
		return true, nil
	}
	typ, rest, _ := strings.Cut(grantee, ":")
	id, relation, _ := strings.Cut(rest, "#")
	switch typ {
	case "group":
		return s.holds(ctx, engine.ObjectRef{Type: "group", ID: id}, "member", p)
	case "organization":
		return s.holds(ctx, orgRef(id), activeAdmin(relation), p)
	}
	return false, nil
}

// heldDelegation finds a live delegation through which p holds every scope on
// org: on org itself, or on an ancestor with subtree. wantSubtree requires
// one that reaches org's descendants too.
func (s *Service) heldDelegation(ctx context.Context, tx store.Tx, p Principal, org store.Org, scopes []string, wantSubtree bool) (*store.Delegation, error) {
	path, err := s.path(ctx, tx, org)
	if err != nil {
		return nil, err
	}
	return s.delegationOnPath(ctx, tx, p, path, scopes, wantSubtree)
}

// delegationOnPath is heldDelegation over org's path (ids from the top down
// to org), for callers that have it already.
func (s *Service) delegationOnPath(ctx context.Context, tx store.Tx, p Principal, path []string, scopes []string, wantSubtree bool) (*store.Delegation, error) {
	org := path[len(path)-1]
	for i := len(path) - 1; i >= 0; i-- {
		ds, err := tx.ListDelegations(ctx, path[i])
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			if !s.live(d) || (path[i] != org || wantSubtree) && !d.Subtree {
				continue
			}
			if !containsAll(d.Scopes, scopes) {
				continue
			}
			ok, err := s.holdsGrantee(ctx, p, d.Grantee)
			if err != nil {
				return nil, err
			}
			if ok {
				return &d, nil
			}
		}
	}
	return nil, nil
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// syncGrantee rewrites the scope relationships grantee holds on org from the
// live delegations: a scope stays while any delegation grants it, with the
// latest expiry among them (none = no expiry).
func (s *Service) syncGrantee(ctx context.Context, tx store.Tx, o *op, org, grantee string, subject engine.SubjectRef) error {
	ds, err := tx.ListDelegations(ctx, org)
	if err != nil {
		return err
	}
	type grant struct {
		forever bool
		until   time.Time
	}
	want := map[string]*grant{}
	for _, d := range ds {
		if d.Grantee != grantee || !s.live(d) {
			continue
		}
		for _, sc := range d.Scopes {
			relation := delegationScopes[sc].local
			if d.Subtree {
				relation = delegationScopes[sc].subtree
			}
			g := want[relation]
			if g == nil {
				g = &grant{}
				want[relation] = g
			}
			if d.ExpiresAt == nil {
				g.forever = true
			} else if d.ExpiresAt.After(g.until) {
				g.until = *d.ExpiresAt
			}
		}
	}
	for _, sc := range DelegationScopes {
		for _, relation := range []string{delegationScopes[sc].subtree, delegationScopes[sc].local} {
			r := rel(orgRef(org), relation, subject)
			g := want[relation]
			if g == nil {
				o.delete(r)
				continue
			}
			if !g.forever {
				until := g.until
				r.ExpiresAt = &until
			}
			o.touch(r)
		}
	}
	return nil
}

// subjectOf is the graph subject of a stored (canonical) grantee. An
// organization's admins are granted as its active_admin set: suspending the
// organization suspends what its admins administer through delegation.
func subjectOf(grantee string) engine.SubjectRef {
	typ, rest, _ := strings.Cut(grantee, ":")
	id, relation, _ := strings.Cut(rest, "#")
	if typ == "group" {
		return groupMembers(id)
	}
	return engine.SubjectRef{Object: engine.ObjectRef{Type: typ, ID: id}, Relation: activeAdmin(relation)}
}

func activeAdmin(relation string) string {
	if relation == "admin" {
		return "active_admin"
	}
	return relation
}

// Delegate grants scopes on an organization. The caller must hold every scope
// it grants (403, audited); it records the delegation the caller held them
// through (via), which also bounds the new one's expiry. The grant is pending
// until approved when asked, or when the organization requires approval.
func (s *Service) Delegate(ctx context.Context, p Principal, ref string, in CreateDelegation) (Delegation, error) {
	scopes, err := validScopes(in.Scopes)
	if err != nil {
		return Delegation{}, err
	}
	if len(in.Reason) > 1000 {
		return Delegation{}, trellis.Invalid("reason", "at most 1000 characters")
	}
	var out Delegation
	err = s.run(ctx, p, "delegation.create", func(tx store.Tx, o *op) error {
		if in.ExpiresAt != nil && !in.ExpiresAt.After(o.now) {
			return trellis.Invalid("expiresAt", "must be in the future, got %s", in.ExpiresAt.Format(time.RFC3339))
		}
		org, err := s.visibleOrg(ctx, tx, p, ref)
		if err != nil {
			return err
		}
		grantee, subject, err := granteeSubject(ctx, tx, org, in.Grantee)
		if err != nil {
			return err
		}
		if err := s.granteeVisible(ctx, tx, p, org, grantee); err != nil {
			return err
		}
		if err := s.noEscalation(ctx, tx, p, org, scopePerms(scopes), "scopes"); err != nil {
			return err
		}
		d := store.Delegation{ID: newID("dlg"), Org: org.ID, Grantee: grantee, Scopes: scopes, Subtree: in.Subtree,
			Status: store.DelegationActive, GrantedBy: p.Actor(), Reason: in.Reason, CreatedAt: o.now}
		if in.ExpiresAt != nil {
			at := in.ExpiresAt.UTC()
			d.ExpiresAt = &at
		}
		own, err := s.can(ctx, tx, p, org, permGovern)
		if err != nil {
			return err
		}
		if !own {
			if err := s.drawOn(ctx, tx, p, org, &d); err != nil {
				return err
			}
		}
		if in.RequireApproval || org.Policy.DelegationApproval {
			d.Status = store.DelegationPending
		}
		if err := tx.InsertDelegation(ctx, d); err != nil {
			return err
		}
		if d.Status == store.DelegationActive {
			if err := s.syncGrantee(ctx, tx, o, org.ID, grantee, subject); err != nil {
				return err
			}
		}
		o.record(org.ID, "delegation.create", "delegation:"+d.ID, delegationDetails(d))
		out = s.delegationView(d)
		return nil
	})
	return out, err
}

// drawOn records, for a grantor without full administration of org, every
// live delegation it draws the granted scopes from (d.Via): each scope comes
// from a delegation that reaches org (and its subtree when d has subtree), or
// from the grantor's own right (a role). A scope held only through local
// delegations cannot be granted to the subtree. The new delegation expires
// no later than the earliest of those it draws on, and is revoked with any.
func (s *Service) drawOn(ctx context.Context, tx store.Tx, p Principal, org store.Org, d *store.Delegation) error {
	for _, sc := range d.Scopes {
		held, err := s.heldDelegation(ctx, tx, p, org, []string{sc}, d.Subtree)
		if err != nil {
			return err
		}
		if held == nil && d.Subtree {
			local, err := s.heldDelegation(ctx, tx, p, org, []string{sc}, false)
			if err != nil {
				return err
			}
			if local != nil {
				return &escalation{org: org.ID, perm: "subtree", field: "subtree",
					err: fmt.Errorf("%w: subtree: delegation %s grants %s on organization %s only, not its subtree", trellis.ErrForbidden, local.ID, sc, org.ID)}
			}
		}
		if held == nil || slices.Contains(d.Via, held.ID) {
			continue
		}
		d.Via = append(d.Via, held.ID)
		if held.ExpiresAt != nil && (d.ExpiresAt == nil || d.ExpiresAt.After(*held.ExpiresAt)) {
			at := *held.ExpiresAt // a re-delegation cannot outlive what it came through
			d.ExpiresAt = &at
		}
	}
	slices.Sort(d.Via)
	return nil
}

func delegationDetails(d store.Delegation) map[string]any {
	m := map[string]any{"grantee": d.Grantee, "scopes": d.Scopes, "subtree": d.Subtree, "status": d.Status}
	if len(d.Via) > 0 {
		m["via"] = d.Via
	}
	if d.ExpiresAt != nil {
		m["expiresAt"] = d.ExpiresAt.Format(time.RFC3339)
	}
	if d.Reason != "" {
		m["reason"] = d.Reason
	}
	return m
}

// delegationFor loads a delegation and its organization, hiding both from
// callers who can neither see the organization nor are party to the grant.
func (s *Service) delegationFor(ctx context.Context, tx store.Tx, p Principal, id string) (store.Delegation, store.Org, error) {
	d, err := tx.GetDelegation(ctx, id)
	if errors.Is(err, trellis.ErrNotFound) {
		return d, store.Org{}, notFound("delegation", id)
	} else if err != nil {
		return d, store.Org{}, err
	}
	org, err := tx.GetOrg(ctx, d.Org)
	if errors.Is(err, trellis.ErrNotFound) {
		return d, store.Org{}, notFound("delegation", id)
	} else if err != nil {
		return d, store.Org{}, err
	}
	ok, err := s.visible(ctx, tx, p, org)
	if err == nil && !ok {
		ok = d.GrantedBy == p.Actor()
		if !ok {
			ok, err = s.holdsGrantee(ctx, p, d.Grantee)
		}
	}
	if err != nil {
		return d, org, err
	}
	if !ok {
		return d, org, notFound("delegation", id)
	}
	return d, org, nil
}

// canApprove: an administrator of the organization itself (not of an
// ancestor: the organization consents), or, for an organization without
// administrators of its own (mandatory delegation), whoever governs it.
func (s *Service) canApprove(ctx context.Context, tx store.Tx, p Principal, org store.Org) (bool, error) {
	if org.Policy.DelegationRequired {
		return s.can(ctx, tx, p, org, permGovern)
	}
	if p.Kind == KindProvider {
		return false, nil
	}
	if ok, err := s.inScope(ctx, tx, p, org); err != nil || !ok {
		return false, err
	}
	if !keyAllows(p.Permissions, permManage) {
		return false, nil
	}
	return s.holds(ctx, orgRef(org.ID), "own_admin", p)
}

// ApproveDelegation activates a pending delegation. Only the organization's
// own administrators approve (never the grantee), and the approver must hold
// every scope it activates.
func (s *Service) ApproveDelegation(ctx context.Context, p Principal, id string) (Delegation, error) {
	var out Delegation
	err := s.run(ctx, p, "delegation.approve", func(tx store.Tx, o *op) error {
		d, org, err := s.delegationFor(ctx, tx, p, id)
		if err != nil {
			return err
		}
		switch st := s.delegationStatus(d); st {
		case store.DelegationPending:
		case store.DelegationActive:
			out = s.delegationView(d) // approving twice changes nothing
			return nil
		default:
			return trellis.Conflict("delegation_"+st, "delegation %s is %s", d.ID, st)
		}
		if party, err := s.holdsGrantee(ctx, p, d.Grantee); err != nil {
			return err
		} else if party {
			return fmt.Errorf("%w: the grantee of a delegation cannot approve it", trellis.ErrForbidden)
		}
		ok, err := s.canApprove(ctx, tx, p, org)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: only an administrator of organization %s itself may approve delegations on it", trellis.ErrForbidden, org.ID)
		}
		if err := s.noEscalation(ctx, tx, p, org, scopePerms(d.Scopes), "scopes"); err != nil {
			return err
		}
		d.Status, d.ApprovedBy, d.ApprovedAt = store.DelegationActive, p.Actor(), &o.now
		if err := tx.UpdateDelegation(ctx, d); err != nil {
			return err
		}
		if err := s.syncGrantee(ctx, tx, o, org.ID, d.Grantee, subjectOf(d.Grantee)); err != nil {
			return err
		}
		o.record(org.ID, "delegation.approve", "delegation:"+d.ID, delegationDetails(d))
		out = s.delegationView(d)
		return nil
	})
	return out, err
}

// RevokeDelegation ends a delegation and, in the same operation, every
// delegation granted through it, transitively. The organization's governors,
// the grantor and the grantee (renouncing) may revoke.
func (s *Service) RevokeDelegation(ctx context.Context, p Principal, id string) (Delegation, error) {
	var out Delegation
	err := s.run(ctx, p, "delegation.revoke", func(tx store.Tx, o *op) error {
		d, org, err := s.delegationFor(ctx, tx, p, id)
		if err != nil {
			return err
		}
		ok := d.GrantedBy == p.Actor()
		if !ok {
			if ok, err = s.can(ctx, tx, p, org, permGovern); err != nil {
				return err
			}
		}
		if !ok {
			if ok, err = s.holdsGrantee(ctx, p, d.Grantee); err != nil {
				return err
			}
		}
		if !ok {
			return fmt.Errorf("%w: only the organization's administrators, the grantor or the grantee may revoke delegation %s", trellis.ErrForbidden, d.ID)
		}
		revoked, err := s.revokeTree(ctx, tx, o, d, "")
		if err != nil {
			return err
		}
		d, err = tx.GetDelegation(ctx, d.ID)
		if err != nil {
			return err
		}
		out = s.delegationView(d)
		out.Revoked = revoked
		return nil
	})
	return out, err
}

// revokeTree revokes d and every delegation granted through it (breadth
// first), rewriting each grantee's relationships and auditing each on its
// organization's chain. cause is the delegation whose revocation cascaded.
func (s *Service) revokeTree(ctx context.Context, tx store.Tx, o *op, d store.Delegation, cause string) ([]string, error) {
	queue := []store.Delegation{d}
	causes := map[string]string{d.ID: cause}
	var revoked []string
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		children, err := tx.DelegationsVia(ctx, cur.ID)
		if err != nil {
			return nil, err
		}
		for _, c := range children {
			if _, seen := causes[c.ID]; !seen {
				causes[c.ID] = cur.ID
				queue = append(queue, c)
			}
		}
		if cur.Status == store.DelegationRevoked {
			continue
		}
		cur.Status, cur.RevokedBy, cur.RevokedAt = store.DelegationRevoked, o.p.Actor(), &o.now
		if err := tx.UpdateDelegation(ctx, cur); err != nil {
			return nil, err
		}
		if err := s.syncGrantee(ctx, tx, o, cur.Org, cur.Grantee, subjectOf(cur.Grantee)); err != nil {
			return nil, err
		}
		details := delegationDetails(cur)
		if c := causes[cur.ID]; c != "" {
			details["cascadedFrom"] = c
		}
		o.record(cur.Org, "delegation.revoke", "delegation:"+cur.ID, details)
		revoked = append(revoked, cur.ID)
	}
	return revoked, nil
}

// GetDelegation returns a delegation with its provenance chain (the
// delegations it was granted through, nearest first) and what was granted
// through it.
func (s *Service) GetDelegation(ctx context.Context, p Principal, id string) (Delegation, error) {
	var out Delegation
	err := s.read(ctx, func(tx store.Tx) error {
		d, _, err := s.delegationFor(ctx, tx, p, id)
		if err != nil {
			return err
		}
		out = s.delegationView(d)
		// breadth first: the delegations it drew on, then theirs
		for queue, seen := slices.Clone(d.Via), map[string]bool{d.ID: true}; len(queue) > 0; queue = queue[1:] {
			if seen[queue[0]] {
				continue
			}
			seen[queue[0]] = true
			up, err := tx.GetDelegation(ctx, queue[0])
			if errors.Is(err, trellis.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			out.Chain = append(out.Chain, s.delegationView(up))
			queue = append(queue, up.Via...)
		}
		children, err := tx.DelegationsVia(ctx, d.ID)
		if err != nil {
			return err
		}
		for _, c := range children {
			out.Granted = append(out.Granted, c.ID)
		}
		return nil
	})
	return out, err
}

// ListDelegations lists the delegations on an organization (any caller who
// can see it).
func (s *Service) ListDelegations(ctx context.Context, p Principal, ref string) ([]Delegation, error) {
	out := []Delegation{}
	err := s.read(ctx, func(tx store.Tx) error {
		org, err := s.visibleOrg(ctx, tx, p, ref)
		if err != nil {
			return err
		}
		ds, err := tx.ListDelegations(ctx, org.ID)
		for _, d := range ds {
			out = append(out, s.delegationView(d))
		}
		return err
	})
	return out, err
}
