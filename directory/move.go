package directory

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// Bounds of a move's impact listing.
const (
	moveMaxOrgs   = 200
	moveMaxListed = 1000
)

// Defaults of the bounds on move previews (Config).
const (
	defaultMovePreviewTimeout          = 10 * time.Second
	defaultMovePreviewMaxRelationships = 20000
	defaultMovePreviews                = 2
)

// validateMovePreviews fills the move-preview bounds of c and checks them.
func (c *Config) validateMovePreviews() error {
	if c.MovePreviewTimeout == 0 {
		c.MovePreviewTimeout = defaultMovePreviewTimeout
	}
	if c.MovePreviewTimeout < 0 {
		return trellis.Invalid("movePreviewTimeout", "must be positive, got %s", c.MovePreviewTimeout)
	}
	if c.MovePreviewMaxRelationships == 0 {
		c.MovePreviewMaxRelationships = defaultMovePreviewMaxRelationships
	}
	if c.MovePreviewMaxRelationships < 0 {
		return trellis.Invalid("movePreviewMaxRelationships", "must be positive, got %d", c.MovePreviewMaxRelationships)
	}
	if c.MovePreviews == 0 {
		c.MovePreviews = defaultMovePreviews
	}
	if c.MovePreviews < 0 {
		return trellis.Invalid("movePreviews", "must be positive, got %d", c.MovePreviews)
	}
	return nil
}

// MoveOrg is the body of POST /v1/organizations/{org}/move.
type MoveOrg struct {
	Parent *string `json:"parent"` // required; "" moves to the top level (provider admins)
	DryRun bool    `json:"dryRun"`
}

// AccessChange is one (subject, organization, permission) gained or lost.
type AccessChange struct {
	Subject      string `json:"subject"`
	Organization string `json:"organization"`
	Permission   string `json:"permission"`
}

// Impact is what a change would grant and revoke.
type Impact struct {
	Gained []AccessChange `json:"gained"`
	Lost   []AccessChange `json:"lost"`
	Totals struct {
		Gained        int `json:"gained"`
		Lost          int `json:"lost"`
		Organizations int `json:"organizations"`
		// Relationships is how many stored relationships the computation
		// loaded: those the moved subtree's permissions depend on, never the
		// other tenants'.
		Relationships int `json:"relationships"`
	} `json:"totals"`
	Truncated bool `json:"truncated,omitempty"`
}

// RoleUnbinding is a custom role of a former ancestor that a move unbinds in
// one organization of the moved subtree: the role is no longer usable there,
// so its holders lose it (and what it granted) in the same operation.
type RoleUnbinding struct {
	Organization    string   `json:"organization"` // where it was bound
	Role            string   `json:"role"`         // the role's id
	Key             string   `json:"key"`
	DefinedOn       string   `json:"definedOn"` // the organization that defines it
	Members         []string `json:"members"`   // user ids
	Groups          []string `json:"groups"`
	ServiceAccounts []string `json:"serviceAccounts"`
	Invitations     []string `json:"invitations"` // pending invitations that offered it
}

// MoveResult answers a move (or its preview).
type MoveResult struct {
	Organization string          `json:"organization"`
	From         *string         `json:"from"`
	To           *string         `json:"to"`
	DryRun       bool            `json:"dryRun"`
	Applied      bool            `json:"applied"`
	Impact       Impact          `json:"impact"`
	RolesUnbound []RoleUnbinding `json:"rolesUnbound"`
}

// movePlan is what a move changes: the organization's place in the graph and
// the custom roles of its former ancestors bound inside the moved subtree.
type movePlan struct {
	org       store.Org
	newParent string
	orgs      []store.Org // the moved subtree, parents first
	updates   []engine.RelationshipUpdate
	filters   []engine.RelationshipFilter // sweep what is left of unbound role bindings
	unbound   []RoleUnbinding
	// rows losing role keys
	members     []store.Membership
	groups      []store.Group
	accounts    []store.ServiceAccount
	invitations []store.Invitation
}

// planMove validates a move and plans it.
func (s *Service) planMove(ctx context.Context, tx store.Tx, p Principal, ref string, in MoveOrg) (movePlan, error) {
	var plan movePlan
	org, err := s.visibleOrg(ctx, tx, p, ref)
	if err != nil {
		return plan, err
	}
	plan.org = org
	if err := s.authorizeAbove(ctx, tx, p, org); err != nil {
		return plan, err
	}
	if plan.orgs, err = subtree(ctx, tx, org); err != nil {
		return plan, err
	}
	var above []string // the new ancestors, top first
	if in.Parent != nil && *in.Parent != "" {
		parent, err := resolveOrg(ctx, tx, *in.Parent)
		if errors.Is(err, trellis.ErrNotFound) {
			return plan, trellis.Invalid("parent", "organization %q does not exist", *in.Parent)
		} else if err != nil {
			return plan, err
		}
		if slices.ContainsFunc(plan.orgs, func(o store.Org) bool { return o.ID == parent.ID }) {
			return plan, trellis.Rule("cycle", "organization %s cannot move under %s, which is itself or inside its subtree", org.Slug, parent.Slug)
		}
		if err := s.authorize(ctx, tx, p, parent, permManage); err != nil {
			if errors.Is(err, trellis.ErrNotFound) {
				return plan, trellis.Invalid("parent", "organization %q does not exist", *in.Parent)
			}
			return plan, err
		}
		if above, err = s.path(ctx, tx, parent); err != nil {
			return plan, err
		}
		plan.newParent = parent.ID
	} else if err := s.requireProvider(ctx, p); err != nil {
		return plan, err
	}
	base, err := s.path(ctx, tx, org)
	if err != nil {
		return plan, err
	}
	paths := map[string][]string{}
	height := 0
	for _, o := range plan.orgs {
		op, err := s.path(ctx, tx, o)
		if err != nil {
			return plan, err
		}
		paths[o.ID] = op
		height = max(height, len(op)-len(base)+1)
	}
	if len(above)+height > s.cfg.MaxDepth {
		return plan, trellis.Rule("max_depth", "the move would nest organizations %d levels deep; the limit is %d", len(above)+height, s.cfg.MaxDepth)
	}
	moved := org
	moved.Parent = plan.newParent
	for _, r := range s.orgTuples(org) {
		plan.updates = append(plan.updates, engine.RelationshipUpdate{Operation: engine.OpDelete, Relationship: r})
	}
	for _, r := range s.orgTuples(moved) {
		plan.updates = append(plan.updates, engine.RelationshipUpdate{Operation: engine.OpTouch, Relationship: r})
	}
	plan.updates = append(plan.updates, relineage(plan.orgs, base[:len(base)-1], above)...)
	if err := s.planUnbinding(ctx, tx, &plan, base[:len(base)-1], above, paths); err != nil {
		return plan, err
	}
	plan.updates = dedupe(plan.updates)
	return plan, nil
}

// planUnbinding finds the custom role keys held in the moved subtree that
// resolve, after the move, to another role or to none: roles defined on a
// former ancestor, and roles of a remaining ancestor that a new ancestor's
// role of the same key would shadow. Their holders lose them (rows and
// tuples), pending invitations stop offering them, and the bindings go; a key
// never silently switches to another organization's role.
func (s *Service) planUnbinding(ctx context.Context, tx store.Tx, plan *movePlan, oldAbove, newAbove []string, paths map[string][]string) error {
	// only roles defined above the subtree on one side and not the other can
	// resolve differently after the move
	changed := false
	for _, id := range append(slices.Clone(oldAbove), newAbove...) {
		if changed || (slices.Contains(oldAbove, id) && slices.Contains(newAbove, id)) {
			continue
		}
		roles, err := tx.ListRoles(ctx, id)
		if err != nil {
			return err
		}
		changed = len(roles) > 0
	}
	if !changed {
		return nil
	}
	cache := map[string]*store.Role{}
	resolve := func(chain []string, key string) (*store.Role, error) {
		for i := len(chain) - 1; i >= 0; i-- {
			ck := chain[i] + "|" + key
			r, ok := cache[ck]
			if !ok {
				got, err := tx.GetRoleByKey(ctx, chain[i], key)
				switch {
				case errors.Is(err, trellis.ErrNotFound):
				case err != nil:
					return nil, err
				default:
					r = &got
				}
				cache[ck] = r
			}
			if r != nil {
				return r, nil
			}
		}
		return nil, nil
	}
	depth := len(oldAbove) // the moved organization's index in its paths
	unbound := map[string]*RoleUnbinding{}
	for _, x := range plan.orgs {
		oldChain := paths[x.ID]
		newChain := append(slices.Clone(newAbove), oldChain[depth:]...)
		// lost splits keys into those kept and the custom roles lost
		lost := func(keys []string) (keep []string, gone []resolved, err error) {
			for _, k := range keys {
				if _, ok := s.builtin(k); ok {
					keep = append(keep, k)
					continue
				}
				before, err := resolve(oldChain, k)
				if err != nil {
					return nil, nil, err
				}
				after, err := resolve(newChain, k)
				if err != nil {
					return nil, nil, err
				}
				if before == nil || (after != nil && after.ID == before.ID) {
					keep = append(keep, k)
					continue
				}
				gone = append(gone, resolved{key: k, custom: before, permissions: before.Permissions})
			}
			return keep, gone, nil
		}
		entry := func(r *store.Role) *RoleUnbinding {
			b := bindingID(x.ID, r.ID)
			if unbound[b] == nil {
				unbound[b] = &RoleUnbinding{Organization: x.ID, Role: r.ID, Key: r.Key, DefinedOn: r.Org,
					Members: []string{}, Groups: []string{}, ServiceAccounts: []string{}, Invitations: []string{}}
				plan.filters = append(plan.filters,
					engine.RelationshipFilter{ResourceType: "role_binding", ResourceID: b},
					engine.RelationshipFilter{ResourceType: "organization", ResourceID: x.ID, Relation: "binding", Subject: &engine.SubjectFilter{Type: "role_binding", ID: b}})
			}
			return unbound[b]
		}
		revoke := func(subject engine.SubjectRef, gone []resolved) {
			for _, r := range grantTuples(x.ID, subject, gone) {
				plan.updates = append(plan.updates, engine.RelationshipUpdate{Operation: engine.OpDelete, Relationship: r})
			}
		}
		// unbind drops the lost custom roles from one holder's keys: the holder
		// is listed on each role's unbinding, its tuples revoked (subject nil:
		// it has none, an invitation), and the keys kept returned (fallback
		// when none is left), with whether any was lost
		unbind := func(keys []string, subject *engine.SubjectRef, holders func(*RoleUnbinding) *[]string, id string, fallback []string) ([]string, bool, error) {
			keep, gone, err := lost(keys)
			if err != nil || len(gone) == 0 {
				return keys, false, err
			}
			for _, r := range gone {
				list := holders(entry(r.custom))
				*list = append(*list, id)
			}
			if subject != nil {
				revoke(*subject, gone)
			}
			if len(keep) == 0 {
				keep = fallback
			}
			return keep, true, nil
		}
		members, err := tx.ListMembers(ctx, x.ID, store.Page{})
		if err != nil {
			return err
		}
		for _, m := range members {
			var subject *engine.SubjectRef
			if m.Status == store.StatusActive {
				u := subj("user", m.User)
				subject = &u
			}
			roles, changed, err := unbind(m.Roles, subject, func(u *RoleUnbinding) *[]string { return &u.Members }, m.User, []string{RoleMember})
			if err != nil {
				return err
			}
			if changed {
				m.Roles = roles
				plan.members = append(plan.members, m)
			}
		}
		groups, err := tx.ListGroups(ctx, x.ID)
		if err != nil {
			return err
		}
		for _, g := range groups {
			members := groupMembers(g.ID)
			roles, changed, err := unbind(g.Roles, &members, func(u *RoleUnbinding) *[]string { return &u.Groups }, g.ID, []string{})
			if err != nil {
				return err
			}
			if changed {
				g.Roles = roles
				plan.groups = append(plan.groups, g)
			}
		}
		accounts, err := tx.ListServiceAccounts(ctx, x.ID)
		if err != nil {
			return err
		}
		for _, sa := range accounts {
			account := subj("service_account", sa.ID)
			roles, changed, err := unbind(sa.Roles, &account, func(u *RoleUnbinding) *[]string { return &u.ServiceAccounts }, sa.ID, []string{RoleMember})
			if err != nil {
				return err
			}
			if changed {
				sa.Roles = roles
				plan.accounts = append(plan.accounts, sa)
			}
		}
		invitations, err := tx.ListInvitations(ctx, x.ID)
		if err != nil {
			return err
		}
		for _, inv := range invitations {
			if inv.AcceptedAt != nil || inv.RevokedAt != nil {
				continue
			}
			roles, changed, err := unbind(inv.Roles, nil, func(u *RoleUnbinding) *[]string { return &u.Invitations }, inv.ID, []string{RoleMember})
			if err != nil {
				return err
			}
			if changed {
				inv.Roles = roles
				plan.invitations = append(plan.invitations, inv)
			}
		}
	}
	for _, x := range plan.orgs { // in subtree order, then by binding id
		var ids []string
		for b, u := range unbound {
			if u.Organization == x.ID {
				ids = append(ids, b)
			}
		}
		slices.Sort(ids)
		for _, b := range ids {
			plan.unbound = append(plan.unbound, *unbound[b])
		}
	}
	return nil
}

// MoveOrganization re-parents an organization. The impact (who gains or loses
// which organization permission across the moved subtree) is computed in a
// scratch engine first, bounded (see previewImpact); with DryRun nothing is
// written. Custom roles of former ancestors bound in the subtree are unbound
// by the move itself (RolesUnbound), and the impact counts what they took.
func (s *Service) MoveOrganization(ctx context.Context, p Principal, ref string, in MoveOrg) (MoveResult, error) {
	if in.Parent == nil {
		return MoveResult{}, trellis.Invalid("parent", "is required: the new parent's id or slug (\"\" moves to the top level)")
	}
	// one computation per organization at a time, a few at once in all, from
	// the plan (a walk of the subtree) to the answer; the move itself holds its
	// place until written, so a preview never races it. Who may not move the
	// organization is answered before it takes a place.
	var org store.Org
	if err := s.read(ctx, func(tx store.Tx) error {
		var err error
		if org, err = s.visibleOrg(ctx, tx, p, ref); err != nil {
			return err
		}
		return s.authorizeAbove(ctx, tx, p, org)
	}); err != nil {
		return MoveResult{}, err
	}
	// planned (a blast radius, which bounds its own computation): no preview
	planning := planOf(ctx) != nil
	if !planning {
		leave, err := s.moves.enter(org, s.cfg.MovePreviews)
		if err != nil {
			return MoveResult{}, err
		}
		defer leave()
	}
	var plan movePlan
	if err := s.read(ctx, func(tx store.Tx) error {
		var err error
		plan, err = s.planMove(ctx, tx, p, ref, in)
		return err
	}); err != nil {
		return MoveResult{}, err
	}
	res := MoveResult{Organization: plan.org.ID, DryRun: in.DryRun, RolesUnbound: plan.unbound}
	if res.RolesUnbound == nil {
		res.RolesUnbound = []RoleUnbinding{}
	}
	if plan.org.Parent != "" {
		res.From = &plan.org.Parent
	}
	if plan.newParent != "" {
		res.To = &plan.newParent
	}
	var impact Impact
	if !planning {
		var err error
		if impact, err = s.previewImpact(ctx, plan); err != nil {
			return MoveResult{}, err
		}
	}
	res.Impact = impact
	if in.DryRun || plan.newParent == plan.org.Parent {
		return res, nil
	}
	err := s.run(ctx, p, "organization.move", func(tx store.Tx, o *op) error {
		cur, err := s.planMove(ctx, tx, p, ref, in)
		if err != nil {
			return err
		}
		org := cur.org
		old := org.Parent
		org.Parent, org.UpdatedAt = cur.newParent, o.now
		if err := tx.UpdateOrg(ctx, org); err != nil {
			return err
		}
		for _, m := range cur.members {
			m.UpdatedAt = o.now
			if err := tx.PutMembership(ctx, m); err != nil {
				return err
			}
		}
		for _, g := range cur.groups {
			g.UpdatedAt = o.now
			if err := tx.UpdateGroup(ctx, g); err != nil {
				return err
			}
		}
		for _, sa := range cur.accounts {
			sa.UpdatedAt = o.now
			if err := tx.UpdateServiceAccount(ctx, sa); err != nil {
				return err
			}
		}
		for _, inv := range cur.invitations {
			if err := tx.UpdateInvitation(ctx, inv); err != nil {
				return err
			}
		}
		o.updates, o.filters = cur.updates, cur.filters
		details := map[string]any{"from": old, "to": cur.newParent, "gained": impact.Totals.Gained, "lost": impact.Totals.Lost, "rolesUnbound": len(cur.unbound)}
		o.record(org.ID, "organization.move", "organization:"+org.ID, details)
		for _, side := range []string{old, cur.newParent} {
			if side != "" {
				o.record(side, "organization.move", "organization:"+org.ID, details)
			}
		}
		for _, u := range cur.unbound {
			o.record(u.Organization, "role.unbind", "role:"+u.Role, map[string]any{
				"key": u.Key, "definedOn": u.DefinedOn, "reason": "organization.move", "movedOrganization": org.ID,
				"members": u.Members, "groups": u.Groups, "serviceAccounts": u.ServiceAccounts, "invitations": u.Invitations})
		}
		if cur.unbound != nil {
			res.RolesUnbound = cur.unbound
		}
		return nil
	})
	res.Applied = err == nil
	return res, err
}

// moveGate admits the impact computations of moves: one at a time per moved
// organization, at most a configured number at once in this process (each
// holds a scratch engine). It sheds load rather than queueing it: a caller
// told to come back is better than one holding a connection and memory.
type moveGate struct {
	mu      sync.Mutex
	running map[string]bool // organization ids
}

func (g *moveGate) enter(org store.Org, limit int) (leave func(), err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.running[org.ID] {
		return nil, trellis.Conflict("move_preview_running", "a move or move preview of organization %s is already being computed; retry when it has finished", org.Slug)
	}
	if len(g.running) >= limit {
		return nil, trellis.Unavailable("move_previews_busy", "%d move previews are being computed, the most this server runs at once; retry shortly", limit)
	}
	if g.running == nil {
		g.running = map[string]bool{}
	}
	g.running[org.ID] = true
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		delete(g.running, org.ID)
	}, nil
}

// previewImpact is impact within the configured time bound: past it, 503.
func (s *Service) previewImpact(ctx context.Context, plan movePlan) (Impact, error) {
	bounded, cancel := context.WithTimeout(ctx, s.cfg.MovePreviewTimeout)
	defer cancel()
	impact, err := s.impact(bounded, plan)
	if err != nil && ctx.Err() == nil && errors.Is(bounded.Err(), context.DeadlineExceeded) {
		return impact, trellis.Unavailable("move_preview_timeout",
			"the impact of moving organization %s was not computed within %s, the bound on a move preview: the subtree may be too large to preview or the server busy; retry later, or move its sub-organizations one at a time",
			plan.org.Slug, s.cfg.MovePreviewTimeout)
	}
	return impact, err
}

// impact compares, for each organization of the moved subtree and each
// organization permission, the users who hold it now and after the move's
// updates, applied to a scratch engine. The scratch holds only what those
// permissions can depend on (engine.ReadReachable from the subtree's
// organizations and from whatever the move points them at): the subtree, its
// old and new ancestors, the platform, the groups, roles, bindings and partner
// organizations they reach; never the other tenants.
func (s *Service) impact(ctx context.Context, plan movePlan) (Impact, error) {
	var out Impact
	out.Gained, out.Lost = []AccessChange{}, []AccessChange{}
	orgs := plan.orgs
	if len(orgs) > moveMaxOrgs {
		orgs, out.Truncated = orgs[:moveMaxOrgs], true
	}
	out.Totals.Organizations = len(orgs)
	text, err := s.schemaText(ctx)
	if err != nil {
		return out, err
	}
	var roots []engine.SubjectRef
	for _, o := range orgs {
		for _, perm := range s.catalogue {
			roots = append(roots, engine.SubjectRef{Object: orgRef(o.ID), Relation: perm})
		}
	}
	for _, u := range plan.updates {
		// what the subtree will point at; a lineage names the new parent's
		// ancestors, which the new parent's own lineage reaches
		if u.Operation != engine.OpDelete && u.Relationship.Relation != "lineage" {
			roots = append(roots, engine.SubjectRef{Object: u.Relationship.Subject.Object})
		}
	}
	rels, err := engine.ReadReachable(ctx, s.graph, text, roots, s.cfg.MovePreviewMaxRelationships)
	if errors.Is(err, engine.ErrTooManyRelationships) {
		return out, trellis.Rule("move_too_large",
			"the permissions of organization %s's subtree depend on more than %d relationships (its organizations, ancestors old and new, and the groups, roles and partner organizations they draw on), the most a move preview loads: move its sub-organizations one at a time",
			plan.org.Slug, s.cfg.MovePreviewMaxRelationships)
	} else if err != nil {
		return out, err
	}
	out.Totals.Relationships = len(rels)
	return out, s.compare(ctx, &out, orgs, text, rels, plan.updates)
}

// compare loads rels into a scratch engine, applies updates and records, per
// organization and permission, the users who hold it in the scratch and not
// in the graph (gained) or the other way round (lost).
func (s *Service) compare(ctx context.Context, out *Impact, orgs []store.Org, text string, rels []engine.Relationship, updates []engine.RelationshipUpdate) error {
	scratch, stop, err := engine.NewScratch(ctx, text, rels)
	if err != nil {
		return err
	}
	defer stop()
	for start := 0; start < len(updates); start += engine.MaxUpdatesPerWrite {
		if _, err := scratch.WriteRelationships(ctx, updates[start:min(start+engine.MaxUpdatesPerWrite, len(updates))]); err != nil {
			return err
		}
	}
	var targets []engine.AccessTarget
	for _, o := range orgs {
		for _, perm := range s.catalogue {
			targets = append(targets, engine.AccessTarget{Object: orgRef(o.ID), Permission: perm})
		}
	}
	return engine.DiffAccess(ctx, s.graph, scratch, targets, func(gained bool, c engine.AccessChange) error {
		change := AccessChange{Subject: c.Subject.String(), Organization: c.Resource.ID, Permission: c.Permission}
		if gained {
			out.Totals.Gained++
			if len(out.Gained) < moveMaxListed {
				out.Gained = append(out.Gained, change)
			}
			return nil
		}
		out.Totals.Lost++
		if len(out.Lost) < moveMaxListed {
			out.Lost = append(out.Lost, change)
		}
		return nil
	})
}

func usersWith(ctx context.Context, g engine.Engine, org, perm string) ([]string, error) {
	return engine.UsersWith(ctx, g, orgRef(org), perm)
}
