package directory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/schema"
	"github.com/trellis-iam/trellis/store"
)

// Authorization by effect. Every directory operation yields the relationship
// updates it commits; before they commit, run hands them to authorizeEffects,
// which works out what each net change gives or takes — which permissions, on
// which organizations, to which subjects — and requires the acting principal
// to hold each of them. No handler can skip it: it sees the updates, not the
// endpoint. The invariants it enforces are written in doc.go and
// docs/decisions/0012-authorization-by-effect.md.

// need is one permission on one organization that a change gives or takes.
// perm "platform" stands for the platform itself (provider admins only).
type need struct{ org, perm string }

const needPlatform = "platform"

// effect is what one relationship gives its subjects.
type effect struct {
	needs    []need
	subjects []engine.SubjectRef // who gains or loses them (nil for structure)
}

// authorityOf is the principal whose authority an operation's effects are
// checked against: the actor, or whoever the operation acts for (an accepted
// invitation acts for its inviter).
func (o *op) authorityOf() Principal {
	if o.authority != nil {
		return *o.authority
	}
	return o.p
}

// authorizeEffects enforces the grant bound, the revoke bound, no self-grant
// and impersonation confinement on the net changes of o.
func (s *Service) authorizeEffects(ctx context.Context, tx store.Tx, o *op) error {
	p := o.authorityOf()
	if p.Kind == KindProvider {
		return nil
	}
	if (p.Impersonation != "" || o.p.Impersonation != "") && mintsAuthority(o.action) {
		return fmt.Errorf("%w: an impersonation never mints lasting authority (%s)", trellis.ErrForbidden, o.action)
	}
	if p.Permissions != nil && !slices.Contains(p.Permissions, permManage) &&
		(strings.HasPrefix(o.action, "delegation.create") || strings.HasPrefix(o.action, "delegation.approve")) {
		return fmt.Errorf("%w: an API key limited to %s cannot delegate administration", trellis.ErrForbidden, strings.Join(p.Permissions, ", "))
	}
	return s.weighEffects(ctx, tx, o, o.filters, o.updates)
}

// weighEffects is authorizeEffects' weighing of some of o's changes: all of
// them, or one step's of a batch (SCIMBatch.Step).
func (s *Service) weighEffects(ctx context.Context, tx store.Tx, o *op, filters []engine.RelationshipFilter, updates []engine.RelationshipUpdate) error {
	p := o.authorityOf()
	if len(updates) == 0 && len(filters) == 0 {
		return nil
	}
	if ok, err := s.isProvider(ctx, p); err != nil || ok {
		return err
	}
	ev := o.evaluator(s, tx)
	// delete filters (a deleted group, role, service account or organization)
	// take away what their stored relationships of system definitions give;
	// app relationships they remove only named the deleted object
	var removed []engine.RelationshipUpdate
	for _, f := range filters {
		found, err := s.relay.matching(ctx, f)
		if err != nil {
			return err
		}
		for _, r := range found {
			if schema.IsSystemDefinition(r.Resource.Type) {
				removed = append(removed, engine.RelationshipUpdate{Operation: engine.OpDelete, Relationship: r})
			}
		}
	}
	return ev.weigh(ctx, removed, updates)
}

// weigh requires the principal to hold what each changed update gives or
// takes; removed are a delete filter's matches (stored by construction).
func (ev *effects) weigh(ctx context.Context, removed, updates []engine.RelationshipUpdate) error {
	if err := ev.prefetch(ctx, updates); err != nil {
		return err
	}
	for i, u := range append(slices.Clip(removed), updates...) {
		if u.Relationship.Resource.Type == "organization" && u.Relationship.Relation == "lineage" {
			// derived from the parent rows, whose own relationship is weighed
			if err := ev.weighLineage(ctx, u); err != nil {
				return err
			}
			continue
		}
		gain, changed := false, true
		if i >= len(removed) {
			var err error
			if gain, changed, err = ev.netOf(ctx, u); err != nil {
				return err
			}
		}
		if !changed {
			continue
		}
		e, err := ev.of(ctx, u.Relationship)
		if err != nil {
			return err
		}
		if err := ev.require(ctx, u.Relationship, e, gain); err != nil {
			return err
		}
	}
	return nil
}

// evaluator is the operation's effect evaluator, made once: its memos (what
// the principal holds, what the graph stores) serve every weighing of the
// operation — each step of a batch, then the whole. The graph does not change
// under an operation: its own updates reach it after commit.
func (o *op) evaluator(s *Service, tx store.Tx) *effects {
	if o.ev == nil {
		p := o.authorityOf()
		// the caller may act on another's authority (an invitation accepted under
		// impersonation is weighed against its inviter): it stays an impersonation
		o.ev = &effects{s: s, tx: tx, o: o, p: p, impersonated: p.Impersonation != "" || o.p.Impersonation != "",
			held: map[need]bool{}, govern: map[string]bool{}, covers: map[string]bool{}, nets: map[string]netResult{}}
	}
	return o.ev
}

// mintsAuthority: actions whose result is lasting authority for someone,
// whatever tuples they write (a pending delegation writes none yet). Creating
// or moving an organization is among them: its ancestors' administrators
// gain administration of it (the authorization model test found an
// impersonation creating a sub-organization, so granting manage to them).
func mintsAuthority(action string) bool {
	for _, prefix := range []string{"delegation.create", "delegation.approve", "api_key.", "token.", "role.", "invitation.create", "service_account.", "scim_token.", "organization.create", "organization.move",
		// what these save is weighed later against whoever saved it: a
		// connection's sign-ins, SCIM's group mappings, the sign-in policy
		"connection.create", "connection.update", "scim.mappings.put", "sso_policy.update"} {
		if strings.HasPrefix(action, prefix) {
			return true
		}
	}
	return false
}

// effects evaluates one operation's changes, memoising graph answers.
type effects struct {
	s  *Service
	tx store.Tx
	o  *op
	p  Principal
	// impersonated: the operation is an impersonation's, whoever's
	// authority it is weighed against: it grants nothing beyond access
	impersonated bool
	held         map[need]bool
	govern       map[string]bool
	covers       map[string]bool
	nets         map[string]netResult // net, by update
	lineage      map[string][]string  // ancestors by organization, as the rows now say (weighLineage)
}

type netResult struct{ gain, changed bool }

// weighLineage allows a lineage relationship only when it says what the
// organization rows say once the operation's rows are written: a touch names
// an ancestor of the organization, a delete one that no longer is (or an
// organization that no longer exists). What a lineage gives is what the
// parent rows give, and the parent relationship written beside them is
// weighed as re-parenting; a lineage the rows do not show is a bug, refused.
func (ev *effects) weighLineage(ctx context.Context, u engine.RelationshipUpdate) error {
	r := u.Relationship
	if r.Subject.Object.Type != "organization" || r.Subject.Relation != "" {
		return fmt.Errorf("directory: %s: a lineage names an organization", r)
	}
	above, err := ev.ancestors(ctx, r.Resource.ID)
	if err != nil {
		return err
	}
	if slices.Contains(above, r.Subject.Object.ID) == (u.Operation != engine.OpDelete) {
		return nil
	}
	return fmt.Errorf("directory: %s %s does not match the organization rows", u.Operation, r)
}

// ancestors lists an organization's ancestors as the rows now say, top
// first (none for one that no longer exists), memoized for the operation.
func (ev *effects) ancestors(ctx context.Context, id string) ([]string, error) {
	if ev.lineage == nil {
		ev.lineage = map[string][]string{}
	}
	if above, ok := ev.lineage[id]; ok {
		return above, nil
	}
	org, err := ev.tx.GetOrg(ctx, id)
	if errors.Is(err, trellis.ErrNotFound) {
		ev.lineage[id] = nil
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	path, err := ev.s.path(ctx, ev.tx, org)
	if err != nil {
		return nil, err
	}
	above := path[:len(path)-1]
	ev.lineage[id] = above
	return above, nil
}

// netKey names an update for the net memo: the same relationship touched
// with another expiry is another question.
func netKey(u engine.RelationshipUpdate) string {
	k := string(u.Operation) + " " + u.Relationship.String()
	if u.Relationship.ExpiresAt != nil {
		k += " until " + u.Relationship.ExpiresAt.UTC().Format(time.RFC3339Nano)
	}
	return k
}

// netOf is net, memoised.
func (ev *effects) netOf(ctx context.Context, u engine.RelationshipUpdate) (gain, changed bool, err error) {
	key := netKey(u)
	if r, ok := ev.nets[key]; ok {
		return r.gain, r.changed, nil
	}
	if gain, changed, err = ev.net(ctx, u); err == nil {
		ev.nets[key] = netResult{gain, changed}
	}
	return gain, changed, err
}

// prefetchReads bounds the graph reads prefetch runs at once.
const prefetchReads = 8

// prefetch reads the stored state of the updates not yet known, several at a
// time, so a batch of N changes waits for about N/prefetchReads reads rather
// than N in a row.
func (ev *effects) prefetch(ctx context.Context, updates []engine.RelationshipUpdate) error {
	var todo []engine.RelationshipUpdate
	seen := map[string]bool{}
	for _, u := range updates {
		k := netKey(u)
		if _, ok := ev.nets[k]; !ok && !seen[k] && ev.fresh(u.Relationship) == "" {
			seen[k] = true
			todo = append(todo, u)
		}
	}
	if len(todo) < 2 {
		return nil
	}
	out := make([]netResult, len(todo))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(prefetchReads)
	for i, u := range todo {
		g.Go(func() error {
			gain, changed, err := ev.net(gctx, u)
			out[i] = netResult{gain, changed}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for i, u := range todo {
		ev.nets[netKey(u)] = out[i]
	}
	return nil
}

// fresh names the object of r this operation created with a new random id
// (a user or group), if any: no stored relationship can name it, so the
// graph need not be asked. Answering "not stored" is also the stricter
// answer — a touch is then weighed as the grant it would be.
func (ev *effects) fresh(r engine.Relationship) string {
	for _, obj := range []engine.ObjectRef{r.Resource, r.Subject.Object} {
		if ev.o.fresh[obj.Type+":"+obj.ID] {
			return obj.Type + ":" + obj.ID
		}
	}
	return ""
}

// net reports whether u changes the graph, and whether it is a gain: a touch
// of a relationship already stored as it is, or a delete of one not stored,
// changes nothing. A touch that moves an expiry later (or removes it) gains.
func (ev *effects) net(ctx context.Context, u engine.RelationshipUpdate) (gain, changed bool, err error) {
	r := u.Relationship
	if ev.fresh(r) != "" {
		return u.Operation != engine.OpDelete, u.Operation != engine.OpDelete, nil
	}
	page, err := ev.s.graph.ReadRelationships(ctx, engine.ReadRequest{
		Filter: engine.RelationshipFilter{ResourceType: r.Resource.Type, ResourceID: r.Resource.ID, Relation: r.Relation,
			Subject: &engine.SubjectFilter{Type: r.Subject.Object.Type, ID: r.Subject.Object.ID, Relation: r.Subject.Relation}},
		Consistency: engine.Consistency{Mode: engine.FullyConsistent}, PageSize: 10,
	})
	if err != nil {
		return false, false, err
	}
	var stored *engine.Relationship
	for i, have := range page.Relationships {
		if have.Subject.Relation == r.Subject.Relation {
			stored = &page.Relationships[i]
		}
	}
	if u.Operation == engine.OpDelete {
		return false, stored != nil, nil
	}
	switch {
	case stored == nil:
		return true, true, nil
	case stored.ExpiresAt == nil:
		return true, false, nil // stored without expiry: nothing to widen
	case r.ExpiresAt == nil || r.ExpiresAt.After(*stored.ExpiresAt):
		return true, true, nil
	}
	return false, !r.ExpiresAt.Equal(*stored.ExpiresAt), nil // an earlier expiry takes away
}

// require checks one changed relationship's effect against the principal.
func (ev *effects) require(ctx context.Context, r engine.Relationship, e effect, gain bool) error {
	if gain && ev.impersonated && len(e.subjects) > 0 && slices.ContainsFunc(e.needs, func(n need) bool { return n.perm != permAccess }) {
		return fmt.Errorf("%w: an impersonation never grants roles or administration (%s)", trellis.ErrForbidden, r)
	}
	for _, n := range e.needs {
		ok, err := ev.holds(ctx, n)
		if err != nil {
			return err
		}
		if !ok {
			verb := "grant"
			if !gain {
				verb = "revoke"
			}
			return &escalation{org: n.org, perm: n.perm, field: ev.o.action,
				err: fmt.Errorf("%w: cannot %s %s on organization %s, which the caller does not hold there (%s)", trellis.ErrForbidden, verb, n.perm, n.org, r)}
		}
	}
	if !gain || len(e.subjects) == 0 {
		return nil
	}
	for _, sub := range e.subjects {
		self, err := ev.coversSelf(ctx, sub)
		if err != nil {
			return err
		}
		if !self {
			continue
		}
		// widening one's own access needs another administrator, unless the
		// caller already administers the organization fully (nothing to widen)
		for _, n := range e.needs {
			ok, err := ev.governs(ctx, n.org)
			if err != nil {
				return err
			}
			if !ok {
				return &escalation{org: n.org, perm: n.perm, field: ev.o.action,
					err: fmt.Errorf("%w: cannot grant %s on organization %s to yourself or a group you are in: another administrator must (%s)", trellis.ErrForbidden, n.perm, n.org, r)}
			}
		}
	}
	return nil
}

// target is the organization a need is checked on: an organization created
// by this very operation is checked on its parent, whose rights it inherits.
func (ev *effects) target(ctx context.Context, id string) (store.Org, error) {
	for ev.o.created[id] {
		org, err := ev.tx.GetOrg(ctx, id)
		if err != nil {
			return org, err
		}
		if org.Parent == "" {
			return org, fmt.Errorf("%w: only provider admins create top-level organizations", trellis.ErrForbidden)
		}
		id = org.Parent
	}
	return ev.tx.GetOrg(ctx, id)
}

// holds: the principal holds n now (through the graph, its key's limit, its
// impersonation's scope and its token's organization) — for access: manages
// the organization's members — or governs the organization (full
// administration, which a suspension does not take away).
func (ev *effects) holds(ctx context.Context, n need) (bool, error) {
	if ok, seen := ev.held[n]; seen {
		return ok, nil
	}
	ok, err := ev.holdsUncached(ctx, n)
	if err == nil {
		ev.held[n] = ok
	}
	return ok, err
}

func (ev *effects) holdsUncached(ctx context.Context, n need) (bool, error) {
	if n.perm == needPlatform {
		return false, nil // provider admins returned earlier
	}
	org, err := ev.target(ctx, n.org)
	if errors.Is(err, trellis.ErrNotFound) {
		// removed by this operation: ask the graph, which still has it
		for _, perm := range []string{n.perm, permGovern} {
			if ok, err := ev.s.holds(ctx, orgRef(n.org), perm, ev.p); err != nil || ok {
				return ok, err
			}
		}
		return false, nil
	} else if err != nil {
		return false, err
	}
	if ok, err := ev.governs(ctx, n.org); err != nil || ok {
		return ok, err
	}
	perm := n.perm
	if perm == permAccess {
		perm = permManageMembers // membership is granted by who manages members, not by members
	}
	ok, err := ev.s.can(ctx, ev.tx, ev.p, org, perm)
	if err != nil || !ok {
		return false, err
	}
	// held by a delegated scope: the operation records the delegation
	return true, ev.s.noteDelegation(ctx, ev.tx, ev.o, ev.p, org, perm)
}

// noteDelegation records on o the live delegation through which p holds perm
// on org, if any: what a delegate grants names the delegation (audit
// details.delegation).
func (s *Service) noteDelegation(ctx context.Context, tx store.Tx, o *op, p Principal, org store.Org, perm string) error {
	for name, sc := range delegationScopes {
		if sc.perm != perm {
			continue
		}
		d, err := s.heldDelegation(ctx, tx, p, org, []string{name}, false)
		if err != nil {
			return err
		}
		if d != nil && !slices.Contains(o.delegations, d.ID) {
			o.delegations = append(o.delegations, d.ID)
		}
	}
	return nil
}

func (ev *effects) governs(ctx context.Context, orgID string) (bool, error) {
	if ok, seen := ev.govern[orgID]; seen {
		return ok, nil
	}
	org, err := ev.target(ctx, orgID)
	if err != nil {
		return false, err
	}
	ok, err := ev.s.can(ctx, ev.tx, ev.p, org, permGovern)
	if err == nil {
		ev.govern[orgID] = ok
	}
	return ok, err
}

// coversSelf: the subject is the principal, or a set it belongs to.
func (ev *effects) coversSelf(ctx context.Context, sub engine.SubjectRef) (bool, error) {
	o := sub.Object
	if sub.Relation == "" {
		return o.Type == ev.p.Kind && o.ID == ev.p.ID && o.ID != "", nil
	}
	key := o.Type + ":" + o.ID + "#" + sub.Relation
	if ok, seen := ev.covers[key]; seen {
		return ok, nil
	}
	ok, err := ev.s.holds(ctx, o, sub.Relation, ev.p)
	if err == nil {
		ev.covers[key] = ok
	}
	return ok, err
}

// of maps one relationship to what it gives: the permissions and
// organizations, and the subjects that receive them. A relationship the
// directory does not know how to weigh is refused (fail closed).
func (ev *effects) of(ctx context.Context, r engine.Relationship) (effect, error) {
	return ev.s.effectOf(ctx, ev.tx, ev.o, r, map[string]bool{})
}

func (s *Service) effectOf(ctx context.Context, tx store.Tx, o *op, r engine.Relationship, seen map[string]bool) (effect, error) {
	id := r.Resource.ID
	subject := []engine.SubjectRef{r.Subject}
	switch r.Resource.Type {
	case "organization":
		switch r.Relation {
		case "owner", "admin":
			needs, err := reach(ctx, tx, id, s.catalogue...)
			if err == nil && r.Relation == "admin" {
				// an organization's admins are a set other organizations
				// delegate to: joining it gains what they delegated
				var held []need
				held, err = s.setHoldings(ctx, tx, o, "organization", id, []string{"admin", "active_admin"}, seen)
				needs = append(needs, held...)
			}
			return effect{needs: needs, subjects: subject}, err
		case "member":
			return effect{needs: needsOn(id, permAccess), subjects: subject}, nil
		case "binding":
			return s.bindingEffect(ctx, tx, o, r.Subject.Object.ID)
		case "parent":
			// re-parenting changes who administers the subtree from above
			return effect{needs: append(needsOn(id, permManage), needsOn(r.Subject.Object.ID, permManage)...)}, nil
		case "suspended":
			return effect{needs: needsOn(id, permGovern)}, nil
		case "platform":
			return effect{needs: []need{{perm: needPlatform}}}, nil
		}
		for _, sc := range delegationScopes {
			switch r.Relation {
			case sc.local:
				return effect{needs: needsOn(id, sc.perm), subjects: subject}, nil
			case sc.subtree:
				needs, err := reach(ctx, tx, id, sc.perm)
				return effect{needs: needs, subjects: subject}, err
			}
		}
	case "role_binding":
		switch r.Relation {
		case "subject":
			e, err := s.bindingEffect(ctx, tx, o, id)
			e.subjects = subject
			return e, err
		case "role":
			return s.bindingEffect(ctx, tx, o, id)
		}
	case "role":
		role, err := s.roleOrg(ctx, tx, o, id)
		if err != nil {
			return effect{}, err
		}
		if r.Relation == "org" {
			return effect{needs: needsOn(r.Subject.Object.ID, permManageRoles)}, nil
		}
		if perm, ok := strings.CutPrefix(r.Relation, "grants_"); ok {
			// a role's permission reaches every binding of the role
			e := effect{needs: needsOn(role, perm)}
			bindings, err := s.bindingsOf(ctx, o, id)
			if err != nil {
				return e, err
			}
			for _, b := range bindings {
				org, _, _ := strings.Cut(b, "|")
				needs, err := reach(ctx, tx, org, perm)
				if err != nil {
					return e, err
				}
				e.needs = append(e.needs, needs...)
				subs, err := s.bindingSubjects(ctx, o, b)
				if err != nil {
					return e, err
				}
				e.subjects = append(e.subjects, subs...)
			}
			return e, nil
		}
	case "group":
		switch r.Relation {
		case "org":
			return effect{needs: needsOn(r.Subject.Object.ID, permManageMembers)}, nil
		case "member":
			needs, err := s.setHoldings(ctx, tx, o, "group", id, []string{"member"}, seen)
			return effect{needs: needs, subjects: subject}, err
		}
	case "service_account":
		if r.Relation == "org" {
			return effect{needs: needsOn(r.Subject.Object.ID, permManage)}, nil
		}
	case "impersonation":
		// written by the impersonation flow only, which authorizes its actor
		// by its own rules (impersonate permission, approval, platform staff)
		if strings.HasPrefix(o.action, "impersonation.") {
			return effect{}, nil
		}
	case "platform":
		return effect{needs: []need{{perm: needPlatform}}}, nil
	}
	return effect{}, fmt.Errorf("%w: the directory does not write %s#%s", trellis.ErrForbidden, r.Resource.Type, r.Relation)
}

// reach: permissions granted on org that the schema passes down the tree
// (all but access) are needed on every organization below it too — a grant
// held only locally (a delegation without subtree) cannot be handed out with
// a relation that inherits.
func reach(ctx context.Context, tx store.Tx, orgID string, perms ...string) ([]need, error) {
	out := needsOn(orgID, perms...)
	org, err := tx.GetOrg(ctx, orgID)
	if errors.Is(err, trellis.ErrNotFound) {
		return out, nil // removed by this operation: it has no subtree left
	} else if err != nil {
		return nil, err
	}
	below, err := subtree(ctx, tx, org)
	if err != nil {
		return nil, err
	}
	for _, d := range below[1:] {
		for _, p := range perms {
			if p != permAccess {
				out = append(out, need{org: d.ID, perm: p})
			}
		}
	}
	return out, nil
}

func needsOn(org string, perms ...string) []need {
	out := make([]need, len(perms))
	for i, p := range perms {
		out[i] = need{org: org, perm: p}
	}
	return out
}

// roleOrg is the organization that defines a custom role.
func (s *Service) roleOrg(ctx context.Context, tx store.Tx, o *op, id string) (string, error) {
	if role, err := tx.GetRole(ctx, id); err == nil {
		return role.Org, nil
	}
	rels, err := s.readAll(ctx, o, engine.RelationshipFilter{ResourceType: "role", ResourceID: id, Relation: "org"}, 1)
	if err != nil {
		return "", err
	}
	if len(rels) == 0 {
		return "", fmt.Errorf("%w: role %s has no organization", trellis.ErrForbidden, id)
	}
	return rels[0].Subject.Object.ID, nil
}

// rolePermissions: what a custom role grants, before or after this
// operation (the union: both must be covered).
func (s *Service) rolePermissions(ctx context.Context, tx store.Tx, o *op, id string) ([]string, error) {
	var out []string
	if role, err := tx.GetRole(ctx, id); err == nil {
		out = append(out, role.Permissions...)
	}
	rels, err := s.readAll(ctx, o, engine.RelationshipFilter{ResourceType: "role", ResourceID: id}, 0)
	if err != nil {
		return nil, err
	}
	for _, r := range append(rels, o.touched("role", id)...) {
		if perm, ok := strings.CutPrefix(r.Relation, "grants_"); ok && !slices.Contains(out, perm) {
			out = append(out, perm)
		}
	}
	return out, nil
}

// bindingEffect: a role binding (id "<org>|<role>") gives its role's
// permissions on its organization to its subjects.
func (s *Service) bindingEffect(ctx context.Context, tx store.Tx, o *op, binding string) (effect, error) {
	org, role, ok := strings.Cut(binding, "|")
	if !ok {
		return effect{}, fmt.Errorf("%w: role binding %q", trellis.ErrForbidden, binding)
	}
	perms, err := s.rolePermissions(ctx, tx, o, role)
	if err != nil {
		return effect{}, err
	}
	needs, err := reach(ctx, tx, org, perms...)
	if err != nil {
		return effect{}, err
	}
	subs, err := s.bindingSubjects(ctx, o, binding)
	return effect{needs: needs, subjects: subs}, err
}

// bindingSubjects: who a role binding binds, stored or written by o.
func (s *Service) bindingSubjects(ctx context.Context, o *op, binding string) ([]engine.SubjectRef, error) {
	rels, err := s.readAll(ctx, o, engine.RelationshipFilter{ResourceType: "role_binding", ResourceID: binding, Relation: "subject"}, 0)
	if err != nil {
		return nil, err
	}
	var out []engine.SubjectRef
	for _, r := range append(rels, o.touched("role_binding", binding)...) {
		if r.Relation == "subject" {
			out = append(out, r.Subject)
		}
	}
	return out, nil
}

// bindingsOf lists the role bindings of a custom role, stored or written by o.
func (s *Service) bindingsOf(ctx context.Context, o *op, role string) ([]string, error) {
	rels, err := s.readAll(ctx, o, engine.RelationshipFilter{ResourceType: "role_binding", Relation: "role",
		Subject: &engine.SubjectFilter{Type: "role", ID: role}}, 0)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, u := range o.updates {
		r := u.Relationship
		if r.Resource.Type == "role_binding" && r.Relation == "role" && r.Subject.Object.ID == role {
			rels = append(rels, r)
		}
	}
	for _, r := range rels {
		if !slices.Contains(out, r.Resource.ID) {
			out = append(out, r.Resource.ID)
		}
	}
	return out, nil
}

// setHoldings: everything the members of a subject set (group:<id>#member,
// organization:<id>#admin) hold through it — the relationships naming the set
// as their subject (roles, delegations, groups it is nested in, each
// weighed in turn) — as stored and as written by o.
func (s *Service) setHoldings(ctx context.Context, tx store.Tx, o *op, typ, id string, relations []string, seen map[string]bool) ([]need, error) {
	var held []engine.Relationship
	for _, relation := range relations {
		key := typ + ":" + id + "#" + relation
		if seen[key] {
			continue
		}
		seen[key] = true
		for _, resType := range []string{"organization", "role_binding", "group"} {
			rels, err := s.readAll(ctx, o, engine.RelationshipFilter{ResourceType: resType,
				Subject: &engine.SubjectFilter{Type: typ, ID: id, Relation: relation}}, 0)
			if err != nil {
				return nil, err
			}
			held = append(held, rels...)
		}
		for _, u := range o.updates {
			r := u.Relationship
			if r.Subject.Object.Type == typ && r.Subject.Object.ID == id && r.Subject.Relation == relation {
				held = append(held, r)
			}
		}
	}
	var out []need
	for _, r := range held {
		e, err := s.effectOf(ctx, tx, o, r, seen)
		if err != nil {
			return nil, err
		}
		for _, n := range e.needs {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out, nil
}

// touched lists the relationships o touches on one object.
func (o *op) touched(typ, id string) []engine.Relationship {
	var out []engine.Relationship
	for _, u := range o.updates {
		if u.Operation != engine.OpDelete && u.Relationship.Resource.Type == typ && u.Relationship.Resource.ID == id {
			out = append(out, u.Relationship)
		}
	}
	return out
}

// principalOf turns a stored actor ("user:<id>", "service_account:<id>",
// "provider:<name>") back into a principal with no token limits.
func principalOf(actor string) Principal {
	kind, id, _ := strings.Cut(actor, ":")
	switch kind {
	case KindProvider, KindUser, KindServiceAccount:
		return Principal{Kind: kind, ID: id}
	}
	return Principal{Kind: "unknown", ID: actor}
}

// readAll reads what filter f selects from the graph, once per operation (the
// graph does not change under it); a filter naming an object the operation
// created (fresh) selects nothing stored.
func (s *Service) readAll(ctx context.Context, o *op, f engine.RelationshipFilter, limit int) ([]engine.Relationship, error) {
	if o.fresh[f.ResourceType+":"+f.ResourceID] || f.Subject != nil && o.fresh[f.Subject.Type+":"+f.Subject.ID] {
		return nil, nil
	}
	key := fmt.Sprintf("%s:%s#%s %d", f.ResourceType, f.ResourceID, f.Relation, limit)
	if f.Subject != nil {
		key += fmt.Sprintf(" @%s:%s#%s", f.Subject.Type, f.Subject.ID, f.Subject.Relation)
	}
	if rels, ok := o.reads[key]; ok {
		return slices.Clip(rels), nil
	}
	rels, err := engine.ReadAll(ctx, s.graph, f, limit)
	if err != nil {
		return nil, err
	}
	if o.reads == nil {
		o.reads = map[string][]engine.Relationship{}
	}
	o.reads[key] = rels
	return slices.Clip(rels), nil
}
