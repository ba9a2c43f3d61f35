package engine

import (
	"sync"

	core "github.com/authzed/spicedb/pkg/proto/core/v1"
)

// maxAnchorHops bounds parent/anchor walks (the org tree is at most this deep).
const maxAnchorHops = 64

// tenancy maps objects to tenants (the top-level organization of their org
// subtree) and keeps one epoch per tenant. It learns the mapping from the
// relationships written through Trellis:
//   - organization:c#parent@organization:p links an org to its parent;
//   - R#rel@organization:o (or @X for an object X with a known tenant) anchors R to o;
//   - organization:o#rel@X#... anchors an un-anchored X (a group, a role binding) to o.
//
// Correctness first: whatever it cannot confine falls back to coarser epochs.
// An object with no known tenant is keyed by the global write counter (any write
// invalidates it); a write to such an object bumps the global epoch; a tenant
// that gains an edge to an object of unknown tenancy is tainted and from then on
// keyed by the global write counter too. A tenant with an edge into another
// tenant depends on it: bumping the source bumps the dependent.
type tenancy struct {
	mu         sync.RWMutex
	parent     map[string]string              // org id -> parent org id
	anchor     map[ObjectRef]ObjectRef        // object -> object it belongs to
	epoch      map[string]uint64              // tenant root org id -> epoch
	dependents map[string]map[string]struct{} // tenant -> tenants depending on it
	tainted    map[string]struct{}
	orphans    map[ObjectRef]struct{} // objects that lost their anchor: others may still reach them
	global     uint64                 // bumped by writes Trellis cannot confine
	writes     uint64                 // bumped by every write
	terminal   map[string]bool        // types with no relations: never traversed
	degraded   bool                   // the index could not be rebuilt: key everything by the write counter
	// sealed types are those no relation of the schema allows as a subject:
	// no check on another object can traverse into one, so a write to a
	// sealed object can change only the answers about that object. It bumps
	// the object's generation (part of its answers' keys) instead of its
	// tenant's epoch, and the tenant's other answers stay cached.
	sealed map[string]bool
	objGen map[ObjectRef]uint64 // sealed objects written since start (bounded: maxObjectGenerations)
}

// maxObjectGenerations bounds objGen; past it the map is cleared and the
// global epoch bumped, so no key built on a forgotten generation is served.
const maxObjectGenerations = 1 << 20

func newTenancy() *tenancy {
	return &tenancy{
		parent: map[string]string{}, anchor: map[ObjectRef]ObjectRef{}, epoch: map[string]uint64{},
		dependents: map[string]map[string]struct{}{}, tainted: map[string]struct{}{}, orphans: map[ObjectRef]struct{}{},
		terminal: map[string]bool{"user": true}, sealed: map[string]bool{}, objGen: map[ObjectRef]uint64{},
	}
}

const orgType = "organization"

// platformType is the provider itself (the system schema's platform): every
// organization links to it, so it belongs to no tenant. A write to it bumps
// the global epoch (every answer may depend on it), and an edge to it neither
// taints a tenant nor makes tenants depend on one another. Anchoring it to the
// first organization that linked to it made every tenant depend on that one:
// each write there invalidated every tenant's answers. (platformType is
// declared with the impersonation gate.)

// tenantOf returns the tenant root of obj, or "" when unknown. Caller holds mu.
func (t *tenancy) tenantOf(obj ObjectRef) string {
	for hops := 0; hops < maxAnchorHops; hops++ {
		if obj.Type == orgType {
			id := obj.ID
			for i := 0; i < maxAnchorHops; i++ {
				p, ok := t.parent[id]
				if !ok {
					return id
				}
				id = p
			}
			return "" // a cycle or a tree deeper than the bound: treat as unknown
		}
		a, ok := t.anchor[obj]
		if !ok {
			return ""
		}
		obj = a
	}
	return ""
}

// stamp is what a cache key carries about the tenancy of a resource.
type stamp struct {
	tenant string
	epoch  uint64
	global uint64
	writes uint64 // set only when the resource's tenant is unknown or tainted
	object uint64 // the generation of a sealed resource (0 otherwise)
}

func (t *tenancy) stampOf(obj ObjectRef) stamp {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s := stamp{global: t.global}
	if t.sealed[obj.Type] {
		s.object = t.objGen[obj]
	}
	s.tenant = t.tenantOf(obj)
	if s.tenant == "" {
		s.writes = t.writes
		return s
	}
	s.epoch = t.epoch[s.tenant]
	if _, bad := t.tainted[s.tenant]; bad || t.degraded {
		s.writes = t.writes
	}
	return s
}

// degrade makes every answer depend on every write.
func (t *tenancy) degrade() {
	t.mu.Lock()
	t.degraded = true
	t.global++
	t.mu.Unlock()
}

// setTypes records the types that have no relations in the schema, and
// those no relation allows as a subject (sealed).
func (t *tenancy) setTypes(terminal, sealed map[string]bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.terminal, t.sealed = terminal, sealed
}

// unseal treats every type as reachable until the schema's types are learned
// again: called before a schema change, which may let relations reach a type
// that was sealed (a write to it must then bump its tenant again).
func (t *tenancy) unseal() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sealed = map[string]bool{}
}

// applied updates the index for relationships just written and bumps every
// tenant they touch (before and after the change), with dependents. It returns
// the number of tenant epochs bumped and whether the global epoch was bumped.
func (t *tenancy) applied(updates []RelationshipUpdate) (bumped int, global bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.writes++
	touched := map[string]struct{}{}
	for _, u := range updates {
		t.touch(touched, &global, u.Relationship.Resource)
	}
	for _, u := range updates {
		t.index(u)
	}
	for _, u := range updates {
		r := u.Relationship
		t.touch(touched, &global, r.Resource)
		if u.Operation != OpDelete {
			t.link(r)
		}
	}
	return t.bumpTouched(touched, global), global
}

// bumpTouched bumps the touched tenants (with dependents) and, when asked, the
// global epoch; it returns the number of tenant epochs bumped.
func (t *tenancy) bumpTouched(touched map[string]struct{}, global bool) int {
	if global {
		t.global++
	}
	return t.bump(touched)
}

// touch collects the tenant of obj. An object of unknown tenancy needs no bump:
// its own entries are keyed by the write counter, and tenants with edges into it
// are tainted. Only an orphan (an object that lost its anchor, which entries of
// its former tenant may still reach, even after it is anchored again) forces a
// global bump.
func (t *tenancy) touch(touched map[string]struct{}, global *bool, obj ObjectRef) {
	if obj.Type == platformType {
		*global = true
		return
	}
	if t.sealed[obj.Type] { // only its own answers can change
		if len(t.objGen) >= maxObjectGenerations {
			clear(t.objGen)
			*global = true
		}
		t.objGen[obj]++
		return
	}
	if tn := t.tenantOf(obj); tn != "" {
		touched[tn] = struct{}{}
	}
	if t.orphanOnChain(obj) {
		*global = true
	}
}

// orphanOnChain reports whether obj or any object it is anchored through lost an anchor.
func (t *tenancy) orphanOnChain(obj ObjectRef) bool {
	if len(t.orphans) == 0 {
		return false
	}
	for hops := 0; hops < maxAnchorHops; hops++ {
		if _, orphan := t.orphans[obj]; orphan {
			return true
		}
		a, ok := t.anchor[obj]
		if !ok {
			return false
		}
		obj = a
	}
	return true
}

// index records parent links and anchors (or removes them on delete).
func (t *tenancy) index(u RelationshipUpdate) {
	r := u.Relationship
	sub := r.Subject.Object
	if r.Subject.IsWildcard() || t.terminal[sub.Type] || sub.Type == platformType || r.Resource.Type == platformType {
		return // the platform is anchored to nothing, and anchors nothing
	}
	if r.Resource.Type == orgType && r.Relation == "parent" && sub.Type == orgType {
		if u.Operation == OpDelete {
			if t.parent[r.Resource.ID] == sub.ID {
				delete(t.parent, r.Resource.ID)
			}
			return
		}
		oldRoot := t.tenantOf(r.Resource)
		t.parent[r.Resource.ID] = sub.ID
		if newRoot := t.tenantOf(r.Resource); oldRoot != "" && newRoot != "" && oldRoot != newRoot {
			t.merge(oldRoot, newRoot)
		}
		return
	}
	if u.Operation == OpDelete {
		if r.Resource.Type != orgType && t.anchor[r.Resource] == sub {
			delete(t.anchor, r.Resource)
			if !t.sealed[r.Resource.Type] { // nothing reaches a sealed object: no former tenant's entry can
				t.orphans[r.Resource] = struct{}{}
			}
		}
		return
	}
	switch {
	case r.Resource.Type != orgType:
		if _, has := t.anchor[r.Resource]; !has && sub != r.Resource {
			t.anchor[r.Resource] = sub
		}
	case sub.Type != orgType:
		if _, has := t.anchor[sub]; !has {
			t.anchor[sub] = r.Resource
		}
	}
}

// link records that the resource's tenant depends on the subject's tenant.
func (t *tenancy) link(r Relationship) {
	sub := r.Subject.Object
	if r.Subject.IsWildcard() || t.terminal[sub.Type] || sub.Type == platformType {
		return // the platform's writes bump the global epoch, which every key carries
	}
	from := t.tenantOf(r.Resource)
	if from == "" {
		return // writes to it already bump the global epoch
	}
	to := t.tenantOf(sub)
	switch {
	case to == "":
		t.tainted[from] = struct{}{}
	case to != from:
		t.addDependent(to, from)
	}
}

// addDependent records that bumping tenant on must bump tenant dependent too.
func (t *tenancy) addDependent(on, dependent string) {
	if t.dependents[on] == nil {
		t.dependents[on] = map[string]struct{}{}
	}
	t.dependents[on][dependent] = struct{}{}
}

// merge makes a subtree that moved from tenant old to tenant new keep every
// dependency of old: new depends on what old depended on, and dependents of
// old depend on new.
func (t *tenancy) merge(old, new string) {
	for _, deps := range t.dependents {
		if _, ok := deps[old]; ok {
			deps[new] = struct{}{}
		}
	}
	for d := range t.dependents[old] {
		t.addDependent(new, d)
	}
	t.addDependent(new, old)
	t.addDependent(old, new)
	if _, bad := t.tainted[old]; bad {
		t.tainted[new] = struct{}{}
	}
}

// bump increments the epochs of the touched tenants and, transitively, of
// every tenant depending on them.
func (t *tenancy) bump(touched map[string]struct{}) int {
	seen := map[string]struct{}{}
	queue := make([]string, 0, len(touched))
	for tn := range touched {
		queue = append(queue, tn)
	}
	for len(queue) > 0 {
		tn := queue[0]
		queue = queue[1:]
		if _, ok := seen[tn]; ok {
			continue
		}
		seen[tn] = struct{}{}
		t.epoch[tn]++
		for d := range t.dependents[tn] {
			queue = append(queue, d)
		}
	}
	return len(seen)
}

// learn indexes stored relationships without bumping anything: anchors and
// parents on the first pass, dependencies (links) on the second.
func (t *tenancy) learn(rels []Relationship, links bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range rels {
		if links {
			t.link(r)
		} else {
			t.index(RelationshipUpdate{Operation: OpTouch, Relationship: r})
		}
	}
}

// reset forgets the whole index (to learn it again after changes were lost)
// and bumps the global epoch, so no key computed before is produced again.
func (t *tenancy) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.parent)
	clear(t.anchor)
	clear(t.dependents)
	clear(t.tainted)
	clear(t.orphans)
	clear(t.objGen)
	t.degraded = false
	t.global++
	t.writes++
}

// bumpAll invalidates everything (schema changes).
func (t *tenancy) bumpAll() {
	t.mu.Lock()
	t.global++
	t.writes++
	t.mu.Unlock()
}

// bumpObjects bumps the tenants of the given objects (expiry of relationships),
// reporting like applied.
func (t *tenancy) bumpObjects(objs ...ObjectRef) (bumped int, global bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.writes++
	touched := map[string]struct{}{}
	for _, o := range objs {
		t.touch(touched, &global, o)
	}
	return t.bumpTouched(touched, global), global
}

// sealedTypes are the definitions no relation allows as a subject (directly,
// as a subject set or as a wildcard): nothing can hold a relationship to one
// of their objects, so no check on another object traverses into them.
func sealedTypes(defs map[string]*core.NamespaceDefinition) map[string]bool {
	reachable := map[string]bool{}
	for _, d := range defs {
		for _, r := range d.Relation {
			for _, a := range r.GetTypeInformation().GetAllowedDirectRelations() {
				reachable[a.GetNamespace()] = true
			}
		}
	}
	sealed := map[string]bool{}
	for name := range defs {
		if !reachable[name] && name != orgType {
			sealed[name] = true
		}
	}
	return sealed
}
