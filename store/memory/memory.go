package memory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/audit"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

var (
	errReadOnly = errors.New("store: write in a read-only transaction")
	errTxDone   = errors.New("store: write through a transaction that has ended")
)

// kindGroup is GroupMember.Kind for a nested group.
const kindGroup = "group"

// Store is the in-memory store.Store. The zero value is not usable; call New.
//
// InTx holds the write lock for its whole closure and Read the read lock, so
// transactions are serializable. Calling InTx, Read, TamperAudit or
// DeleteAuditEvent from inside a closure deadlocks.
type Store struct {
	mu    sync.RWMutex
	relay sync.Mutex // held by the outbox's one applier (ClaimOutbox)
	tables
}

var _ store.Store = (*Store)(nil)

type memberKey struct{ org, user string }

type groupMemberKey struct{ group, kind, id string }

type roleKey struct{ org, key string }

// auditRow is one stored event. events and chains share these pointers, so
// TamperAudit edits both views at once.
type auditRow struct {
	pos int64 // position in global append order: the ListAudit cursor
	ev  audit.Event
}

// tables is the data. The *By* maps are unique indexes onto the id of the row
// that holds the key; keeping them as maps lets the same undo helpers serve them.
type tables struct {
	orgs        map[string]store.Org
	orgBySlug   map[string]string
	orgByDomain map[string]string // verified domains only

	users       map[string]store.User
	userByEmail map[string]string

	members map[memberKey]store.Membership

	groups       map[string]store.Group
	groupMembers map[groupMemberKey]store.GroupMember

	roles     map[string]store.Role
	roleByKey map[roleKey]string

	invitations map[string]store.Invitation

	accounts map[string]store.ServiceAccount
	apiKeys  map[string]store.APIKey

	providerKeys map[string]store.ProviderKey

	delegations    map[string]store.Delegation
	impersonations map[string]store.Impersonation

	scim scimTables // scim.go

	events  []*auditRow            // every chain, in append order
	chains  map[string][]*auditRow // org ("" = platform) -> its chain
	heads   map[string]audit.Head
	lastPos int64

	outbox []store.OutboxEntry // outbox[i].Seq == i+1

	schemaVersions  []store.SchemaVersion // schemaVersions[i].Version == i+1
	signingKeys     map[string]store.SigningKey
	changes         []store.RelationshipChange // in Seq order (compaction removes a prefix)
	changelogCursor string
	changeIndex     *changeIndex // derived from changes; rebuilt after a changelog write
	federationTables
	grantTables // providergrants.go
}

// New returns an empty store.
func New() *Store {
	return &Store{tables: tables{
		changeIndex:    &changeIndex{},
		orgs:           map[string]store.Org{},
		orgBySlug:      map[string]string{},
		orgByDomain:    map[string]string{},
		users:          map[string]store.User{},
		userByEmail:    map[string]string{},
		members:        map[memberKey]store.Membership{},
		groups:         map[string]store.Group{},
		groupMembers:   map[groupMemberKey]store.GroupMember{},
		roles:          map[string]store.Role{},
		roleByKey:      map[roleKey]string{},
		invitations:    map[string]store.Invitation{},
		accounts:       map[string]store.ServiceAccount{},
		apiKeys:        map[string]store.APIKey{},
		providerKeys:   map[string]store.ProviderKey{},
		delegations:    map[string]store.Delegation{},
		impersonations: map[string]store.Impersonation{},
		scim:           newSCIMTables(),
		chains:         map[string][]*auditRow{},
		heads:          map[string]audit.Head{},
		signingKeys:    map[string]store.SigningKey{},

		federationTables: newFederationTables(),
		grantTables:      newGrantTables(),
	}}
}

// InTx runs fn under the write lock. If fn fails, panics, or ctx ends before
// it returns, every write fn made is undone.
func (s *Store) InTx(ctx context.Context, fn func(tx store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := &tx{tables: &s.tables, write: true}
	committed := false
	// Deferred rather than called after fn so that a panic (or runtime.Goexit,
	// as from t.FailNow in a test) rolls back too; the panic then carries on
	// unchanged, which is what recover-and-re-panic would do.
	defer func() {
		t.done = true
		if !committed {
			t.rollback()
		}
	}()
	if err := fn(t); err != nil {
		return err
	}
	// A database refuses to commit on an ended context; so do we.
	if err := ctx.Err(); err != nil {
		return err
	}
	committed = true
	return nil
}

// Read runs fn under the read lock; writes inside it fail.
func (s *Store) Read(ctx context.Context, fn func(tx store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return fn(&tx{tables: &s.tables})
}

// Ready reports that the store can serve; memory always can.
func (s *Store) Ready(context.Context) error { return nil }

// Close releases nothing; it exists for the interface and may be called again.
func (s *Store) Close() error { return nil }

// TamperAudit lets mutate edit the stored event seq of org's chain in place,
// bypassing the chain and its head on purpose: tests use it to play an
// attacker with raw access to storage and check that audit verification
// notices. Never call it outside tests.
func (s *Store) TamperAudit(org string, seq int64, mutate func(ev *audit.Event)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, err := s.chainIndex(org, seq)
	if err != nil {
		return err
	}
	row := s.chains[org][i]
	mutate(&row.ev)
	row.ev = cloneEvent(row.ev) // keep nothing mutate may still hold
	return nil
}

// TamperAuditHead lets mutate edit org's stored head in place, as an attacker
// with raw access to storage would after rewriting events: a test hook, like
// TamperAudit. org must have a head.
func (s *Store) TamperAuditHead(org string, mutate func(h *audit.Head)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.heads[org]
	if !ok {
		return fmt.Errorf("%w: audit head of organization %q", trellis.ErrNotFound, org)
	}
	mutate(&h)
	s.heads[org] = h
	return nil
}

// DeleteAuditEvent removes the stored event seq of org's chain from the chain
// and the global log, leaving the head where it was: like TamperAudit, an
// attacker's edit for tests of audit verification.
func (s *Store) DeleteAuditEvent(org string, seq int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, err := s.chainIndex(org, seq)
	if err != nil {
		return err
	}
	row := s.chains[org][i]
	s.chains[org] = slices.Delete(s.chains[org], i, i+1)
	j := slices.Index(s.events, row)
	s.events = slices.Delete(s.events, j, j+1)
	return nil
}

func (d *tables) chainIndex(org string, seq int64) (int, error) {
	i := slices.IndexFunc(d.chains[org], func(r *auditRow) bool { return r.ev.Seq == seq })
	if i < 0 {
		return 0, fmt.Errorf("%w: audit event %d of organization %q", trellis.ErrNotFound, seq, org)
	}
	return i, nil
}

// tx is one transaction. Writes record how to undo themselves in undo.
type tx struct {
	*tables
	write bool
	done  bool
	undo  []func()
}

var _ store.Tx = (*tx)(nil)

func (t *tx) writable() error {
	switch {
	case t.done:
		return errTxDone
	case !t.write:
		return errReadOnly
	}
	return nil
}

func (t *tx) rollback() {
	for i := len(t.undo) - 1; i >= 0; i-- {
		t.undo[i]()
	}
	t.undo = nil
}

// set writes m[k] = v and records how to restore the old state.
func set[K comparable, V any](t *tx, m map[K]V, k K, v V) {
	old, had := m[k]
	m[k] = v
	t.undo = append(t.undo, func() {
		if had {
			m[k] = old
		} else {
			delete(m, k)
		}
	})
}

// insertRow stores a new row v under id, refusing an id that is taken.
func insertRow[V any](t *tx, m map[string]V, id string, v V, what string) error {
	if err := t.writable(); err != nil {
		return err
	}
	if _, ok := m[id]; ok {
		return conflict("%s id %q is taken", what, id)
	}
	set(t, m, id, v)
	return nil
}

// getRow returns a copy of row id, or ErrNotFound naming what.
func getRow[V any](m map[string]V, id string, clone func(V) V, what string) (V, error) {
	v, ok := m[id]
	if !ok {
		var zero V
		return zero, notFound(what, id)
	}
	return clone(v), nil
}

// updateRow replaces the existing row id with v.
func updateRow[V any](t *tx, m map[string]V, id string, v V, what string) error {
	if err := t.writable(); err != nil {
		return err
	}
	if _, ok := m[id]; !ok {
		return notFound(what, id)
	}
	set(t, m, id, v)
	return nil
}

// unset deletes m[k] and records how to put it back.
func unset[K comparable, V any](t *tx, m map[K]V, k K) {
	old, had := m[k]
	if !had {
		return
	}
	delete(m, k)
	t.undo = append(t.undo, func() { m[k] = old })
}

// list returns copies of the rows of m that keep accepts, sorted by key,
// after p.After and at most p.Limit of them.
func list[K comparable, V any](m map[K]V, keep func(V) bool, key func(V) string, p store.Page, clone func(V) V) []V {
	var out []V
	for _, v := range m {
		if keep(v) && (p.After == "" || key(v) > p.After) {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b V) int { return strings.Compare(key(a), key(b)) })
	if p.Limit > 0 && len(out) > p.Limit {
		out = out[:p.Limit]
	}
	for i := range out {
		out[i] = clone(out[i])
	}
	return out
}

func notFound(what, key string) error {
	return fmt.Errorf("%w: %s %q", trellis.ErrNotFound, what, key)
}

func conflict(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{trellis.ErrConflict}, args...)...)
}

// ---- organizations

func (t *tx) GetOrg(_ context.Context, id string) (store.Org, error) {
	return getRow(t.orgs, id, cloneOrg, "organization")
}

func (t *tx) GetOrgBySlug(ctx context.Context, slug string) (store.Org, error) {
	id, ok := t.orgBySlug[slug]
	if !ok {
		return store.Org{}, notFound("organization slug", slug)
	}
	return t.GetOrg(ctx, id)
}

func (t *tx) ListOrgs(_ context.Context, f store.OrgFilter) ([]store.Org, error) {
	var ids map[string]bool // nil: any id
	if f.IDs != nil {
		ids = make(map[string]bool, len(f.IDs))
		for _, id := range f.IDs {
			ids[id] = true
		}
	}
	q := strings.ToLower(f.Query)
	keep := func(o store.Org) bool {
		return (f.Parent == nil || o.Parent == *f.Parent) &&
			(ids == nil || ids[o.ID]) &&
			(q == "" || strings.Contains(strings.ToLower(o.Name), q) || strings.Contains(strings.ToLower(o.Slug), q))
	}
	return list(t.orgs, keep, func(o store.Org) string { return o.Slug }, f.Page, cloneOrg), nil
}

func (t *tx) Children(_ context.Context, id string) ([]store.Org, error) {
	keep := func(o store.Org) bool { return o.Parent == id }
	return list(t.orgs, keep, func(o store.Org) string { return o.ID }, store.Page{}, cloneOrg), nil
}

func (t *tx) OrgByVerifiedDomain(ctx context.Context, domain string) (store.Org, error) {
	id, ok := t.orgByDomain[domain]
	if !ok {
		return store.Org{}, notFound("verified domain", domain)
	}
	return t.GetOrg(ctx, id)
}

func (t *tx) InsertOrg(_ context.Context, o store.Org) error {
	if err := t.writable(); err != nil {
		return err
	}
	if _, ok := t.orgs[o.ID]; ok {
		return conflict("organization id %q is taken", o.ID)
	}
	if err := t.checkOrgKeys(o); err != nil {
		return err
	}
	t.indexOrg(o)
	set(t, t.orgs, o.ID, cloneOrg(o))
	return nil
}

func (t *tx) UpdateOrg(_ context.Context, o store.Org) error {
	if err := t.writable(); err != nil {
		return err
	}
	old, ok := t.orgs[o.ID]
	if !ok {
		return notFound("organization", o.ID)
	}
	if err := t.checkOrgKeys(o); err != nil {
		return err
	}
	t.unindexOrg(old)
	t.indexOrg(o)
	set(t, t.orgs, o.ID, cloneOrg(o))
	return nil
}

func (t *tx) DeleteOrg(_ context.Context, id string) error {
	if err := t.writable(); err != nil {
		return err
	}
	old, ok := t.orgs[id]
	if !ok {
		return notFound("organization", id)
	}
	t.unindexOrg(old)
	unset(t, t.orgs, id)
	return nil
}

// checkOrgKeys reports a slug or verified domain that another organization holds.
func (t *tx) checkOrgKeys(o store.Org) error {
	if id, ok := t.orgBySlug[o.Slug]; ok && id != o.ID {
		return conflict("organization slug %q is taken", o.Slug)
	}
	for _, d := range o.Domains {
		if id, ok := t.orgByDomain[d.Domain]; ok && d.Verified && id != o.ID {
			return conflict("domain %q is verified by another organization", d.Domain)
		}
	}
	return nil
}

func (t *tx) indexOrg(o store.Org) {
	set(t, t.orgBySlug, o.Slug, o.ID)
	for _, d := range o.Domains {
		if d.Verified {
			set(t, t.orgByDomain, d.Domain, o.ID)
		}
	}
}

func (t *tx) unindexOrg(o store.Org) {
	unset(t, t.orgBySlug, o.Slug)
	for _, d := range o.Domains {
		if d.Verified {
			unset(t, t.orgByDomain, d.Domain)
		}
	}
}

// ---- delegations and impersonations

func (t *tx) GetDelegation(_ context.Context, id string) (store.Delegation, error) {
	return getRow(t.delegations, id, cloneDelegation, "delegation")
}

func (t *tx) ListDelegations(_ context.Context, org string) ([]store.Delegation, error) {
	keep := func(d store.Delegation) bool { return d.Org == org }
	return list(t.delegations, keep, func(d store.Delegation) string { return d.ID }, store.Page{}, cloneDelegation), nil
}

func (t *tx) DelegationsVia(_ context.Context, id string) ([]store.Delegation, error) {
	keep := func(d store.Delegation) bool { return slices.Contains(d.Via, id) }
	return list(t.delegations, keep, func(d store.Delegation) string { return d.ID }, store.Page{}, cloneDelegation), nil
}

func (t *tx) InsertDelegation(_ context.Context, d store.Delegation) error {
	return insertRow(t, t.delegations, d.ID, cloneDelegation(d), "delegation")
}

func (t *tx) UpdateDelegation(_ context.Context, d store.Delegation) error {
	return updateRow(t, t.delegations, d.ID, cloneDelegation(d), "delegation")
}

func (t *tx) GetImpersonation(_ context.Context, id string) (store.Impersonation, error) {
	return getRow(t.impersonations, id, cloneImpersonation, "impersonation")
}

func (t *tx) ListImpersonations(_ context.Context, org string) ([]store.Impersonation, error) {
	keep := func(im store.Impersonation) bool { return im.Org == org }
	return list(t.impersonations, keep, func(im store.Impersonation) string { return im.ID }, store.Page{}, cloneImpersonation), nil
}

func (t *tx) InsertImpersonation(_ context.Context, im store.Impersonation) error {
	return insertRow(t, t.impersonations, im.ID, cloneImpersonation(im), "impersonation")
}

func (t *tx) UpdateImpersonation(_ context.Context, im store.Impersonation) error {
	return updateRow(t, t.impersonations, im.ID, cloneImpersonation(im), "impersonation")
}

// ---- users

func (t *tx) GetUser(_ context.Context, id string) (store.User, error) {
	u, ok := t.users[id]
	if !ok {
		return store.User{}, notFound("user", id)
	}
	return u, nil // no reference fields: the value is already a copy
}

func (t *tx) GetUserByEmail(ctx context.Context, email string) (store.User, error) {
	id, ok := t.userByEmail[email]
	if !ok {
		return store.User{}, notFound("user email", email)
	}
	return t.GetUser(ctx, id)
}

func (t *tx) InsertUser(_ context.Context, u store.User) error {
	if err := t.writable(); err != nil {
		return err
	}
	if _, ok := t.users[u.ID]; ok {
		return conflict("user id %q is taken", u.ID)
	}
	if _, ok := t.userByEmail[u.Email]; ok {
		return conflict("user email %q is taken", u.Email)
	}
	set(t, t.userByEmail, u.Email, u.ID)
	set(t, t.users, u.ID, u)
	return nil
}

func (t *tx) UpdateUser(_ context.Context, u store.User) error {
	if err := t.writable(); err != nil {
		return err
	}
	old, ok := t.users[u.ID]
	if !ok {
		return notFound("user", u.ID)
	}
	if id, ok := t.userByEmail[u.Email]; ok && id != u.ID {
		return conflict("user email %q is taken", u.Email)
	}
	unset(t, t.userByEmail, old.Email)
	set(t, t.userByEmail, u.Email, u.ID)
	set(t, t.users, u.ID, u)
	return nil
}

// ---- memberships

func (t *tx) GetMembership(_ context.Context, org, user string) (store.Membership, error) {
	m, ok := t.members[memberKey{org, user}]
	if !ok {
		return store.Membership{}, notFound("membership", org+"/"+user)
	}
	return cloneMembership(m), nil
}

func (t *tx) PutMembership(_ context.Context, m store.Membership) error {
	if err := t.writable(); err != nil {
		return err
	}
	set(t, t.members, memberKey{m.Org, m.User}, cloneMembership(m))
	return nil
}

func (t *tx) DeleteMembership(_ context.Context, org, user string) error {
	if err := t.writable(); err != nil {
		return err
	}
	k := memberKey{org, user}
	if _, ok := t.members[k]; !ok {
		return notFound("membership", org+"/"+user)
	}
	unset(t, t.members, k)
	return nil
}

func (t *tx) ListMembers(_ context.Context, org string, p store.Page) ([]store.Membership, error) {
	keep := func(m store.Membership) bool { return m.Org == org }
	return list(t.members, keep, func(m store.Membership) string { return m.User }, p, cloneMembership), nil
}

func (t *tx) UserMemberships(_ context.Context, user string) ([]store.Membership, error) {
	keep := func(m store.Membership) bool { return m.User == user }
	return list(t.members, keep, func(m store.Membership) string { return m.Org }, store.Page{}, cloneMembership), nil
}

// ---- groups

func (t *tx) GetGroup(_ context.Context, id string) (store.Group, error) {
	return getRow(t.groups, id, cloneGroup, "group")
}

func (t *tx) ListGroups(_ context.Context, org string) ([]store.Group, error) {
	keep := func(g store.Group) bool { return g.Org == org }
	return list(t.groups, keep, func(g store.Group) string { return g.ID }, store.Page{}, cloneGroup), nil
}

func (t *tx) InsertGroup(_ context.Context, g store.Group) error {
	return insertRow(t, t.groups, g.ID, cloneGroup(g), "group")
}

func (t *tx) UpdateGroup(_ context.Context, g store.Group) error {
	return updateRow(t, t.groups, g.ID, cloneGroup(g), "group")
}

func (t *tx) DeleteGroup(_ context.Context, id string) error {
	if err := t.writable(); err != nil {
		return err
	}
	if _, ok := t.groups[id]; !ok {
		return notFound("group", id)
	}
	unset(t, t.groups, id)
	for k := range t.groupMembers { // deleting while ranging is safe in Go
		if k.group == id || (k.kind == kindGroup && k.id == id) {
			unset(t, t.groupMembers, k)
		}
	}
	return nil
}

func (t *tx) PutGroupMember(_ context.Context, m store.GroupMember) error {
	if err := t.writable(); err != nil {
		return err
	}
	set(t, t.groupMembers, groupMemberKey{m.Group, m.Kind, m.ID}, m)
	return nil
}

func (t *tx) DeleteGroupMember(_ context.Context, group, kind, id string) error {
	if err := t.writable(); err != nil {
		return err
	}
	k := groupMemberKey{group, kind, id}
	if _, ok := t.groupMembers[k]; !ok {
		return notFound("group member", group+"/"+kind+":"+id)
	}
	unset(t, t.groupMembers, k)
	return nil
}

func (t *tx) GroupMembers(_ context.Context, group string) ([]store.GroupMember, error) {
	keep := func(m store.GroupMember) bool { return m.Group == group }
	// "\x00" sorts below every other byte, so this orders by kind, then id.
	key := func(m store.GroupMember) string { return m.Kind + "\x00" + m.ID }
	return list(t.groupMembers, keep, key, store.Page{}, same), nil
}

func (t *tx) GroupsOf(_ context.Context, kind, id string) ([]store.GroupMember, error) {
	keep := func(m store.GroupMember) bool { return m.Kind == kind && m.ID == id }
	return list(t.groupMembers, keep, func(m store.GroupMember) string { return m.Group }, store.Page{}, same), nil
}

// ---- roles

func (t *tx) GetRole(_ context.Context, id string) (store.Role, error) {
	return getRow(t.roles, id, cloneRole, "role")
}

func (t *tx) GetRoleByKey(ctx context.Context, org, key string) (store.Role, error) {
	id, ok := t.roleByKey[roleKey{org, key}]
	if !ok {
		return store.Role{}, notFound("role key", org+"/"+key)
	}
	return t.GetRole(ctx, id)
}

func (t *tx) ListRoles(_ context.Context, org string) ([]store.Role, error) {
	keep := func(r store.Role) bool { return r.Org == org }
	return list(t.roles, keep, func(r store.Role) string { return r.Key }, store.Page{}, cloneRole), nil
}

func (t *tx) InsertRole(_ context.Context, r store.Role) error {
	if err := t.writable(); err != nil {
		return err
	}
	if _, ok := t.roles[r.ID]; ok {
		return conflict("role id %q is taken", r.ID)
	}
	if _, ok := t.roleByKey[roleKey{r.Org, r.Key}]; ok {
		return conflict("role key %q is taken in organization %q", r.Key, r.Org)
	}
	set(t, t.roleByKey, roleKey{r.Org, r.Key}, r.ID)
	set(t, t.roles, r.ID, cloneRole(r))
	return nil
}

func (t *tx) UpdateRole(_ context.Context, r store.Role) error {
	if err := t.writable(); err != nil {
		return err
	}
	old, ok := t.roles[r.ID]
	if !ok {
		return notFound("role", r.ID)
	}
	if id, ok := t.roleByKey[roleKey{r.Org, r.Key}]; ok && id != r.ID {
		return conflict("role key %q is taken in organization %q", r.Key, r.Org)
	}
	unset(t, t.roleByKey, roleKey{old.Org, old.Key})
	set(t, t.roleByKey, roleKey{r.Org, r.Key}, r.ID)
	set(t, t.roles, r.ID, cloneRole(r))
	return nil
}

func (t *tx) DeleteRole(_ context.Context, id string) error {
	if err := t.writable(); err != nil {
		return err
	}
	old, ok := t.roles[id]
	if !ok {
		return notFound("role", id)
	}
	unset(t, t.roleByKey, roleKey{old.Org, old.Key})
	unset(t, t.roles, id)
	return nil
}

// ---- invitations

func (t *tx) GetInvitation(_ context.Context, id string) (store.Invitation, error) {
	return getRow(t.invitations, id, cloneInvitation, "invitation")
}

func (t *tx) GetInvitationByTokenHash(_ context.Context, hash []byte) (store.Invitation, error) {
	// A scan: invitations are few, and hashes of random tokens do not collide.
	for _, inv := range t.invitations {
		if len(hash) > 0 && bytes.Equal(inv.TokenHash, hash) {
			return cloneInvitation(inv), nil
		}
	}
	return store.Invitation{}, fmt.Errorf("%w: invitation with that token", trellis.ErrNotFound)
}

func (t *tx) ListInvitations(_ context.Context, org string) ([]store.Invitation, error) {
	keep := func(inv store.Invitation) bool { return inv.Org == org }
	return list(t.invitations, keep, func(inv store.Invitation) string { return inv.ID }, store.Page{}, cloneInvitation), nil
}

func (t *tx) InsertInvitation(_ context.Context, inv store.Invitation) error {
	return insertRow(t, t.invitations, inv.ID, cloneInvitation(inv), "invitation")
}

func (t *tx) UpdateInvitation(_ context.Context, inv store.Invitation) error {
	return updateRow(t, t.invitations, inv.ID, cloneInvitation(inv), "invitation")
}

// ---- service accounts and API keys

func (t *tx) GetServiceAccount(_ context.Context, id string) (store.ServiceAccount, error) {
	return getRow(t.accounts, id, cloneServiceAccount, "service account")
}

func (t *tx) ListServiceAccounts(_ context.Context, org string) ([]store.ServiceAccount, error) {
	keep := func(sa store.ServiceAccount) bool { return sa.Org == org }
	return list(t.accounts, keep, func(sa store.ServiceAccount) string { return sa.ID }, store.Page{}, cloneServiceAccount), nil
}

func (t *tx) InsertServiceAccount(_ context.Context, sa store.ServiceAccount) error {
	return insertRow(t, t.accounts, sa.ID, cloneServiceAccount(sa), "service account")
}

func (t *tx) UpdateServiceAccount(_ context.Context, sa store.ServiceAccount) error {
	return updateRow(t, t.accounts, sa.ID, cloneServiceAccount(sa), "service account")
}

func (t *tx) DeleteServiceAccount(_ context.Context, id string) error {
	if err := t.writable(); err != nil {
		return err
	}
	if _, ok := t.accounts[id]; !ok {
		return notFound("service account", id)
	}
	unset(t, t.accounts, id)
	for kid, k := range t.apiKeys {
		if k.ServiceAccount == id {
			unset(t, t.apiKeys, kid)
		}
	}
	return nil
}

func (t *tx) GetAPIKey(_ context.Context, id string) (store.APIKey, error) {
	return getRow(t.apiKeys, id, cloneAPIKey, "API key")
}

func (t *tx) ListAPIKeys(_ context.Context, serviceAccount string) ([]store.APIKey, error) {
	keep := func(k store.APIKey) bool { return k.ServiceAccount == serviceAccount }
	return list(t.apiKeys, keep, func(k store.APIKey) string { return k.ID }, store.Page{}, cloneAPIKey), nil
}

func (t *tx) InsertAPIKey(_ context.Context, k store.APIKey) error {
	return insertRow(t, t.apiKeys, k.ID, cloneAPIKey(k), "API key")
}

func (t *tx) UpdateAPIKey(_ context.Context, k store.APIKey) error {
	return updateRow(t, t.apiKeys, k.ID, cloneAPIKey(k), "API key")
}

// ---- audit

func (t *tx) AuditHead(_ context.Context, org string) (audit.Head, error) {
	return t.heads[org], nil
}

func (t *tx) AppendAudit(_ context.Context, ev audit.Event) error {
	if err := t.writable(); err != nil {
		return err
	}
	org := ev.Organization
	head := t.heads[org]
	// The head moves one step at a time; anything else means two writers
	// sealed against the same head, or a caller skipped sealing.
	if ev.Seq != head.Seq+1 {
		return conflict("audit chain %q is at seq %d; event has seq %d", org, head.Seq, ev.Seq)
	}
	t.lastPos++
	row := &auditRow{pos: t.lastPos, ev: cloneEvent(ev)}
	row.ev.HeadCheckpoint = "" // the head's, kept with the head only
	n := len(t.events)
	t.events = append(t.events, row)
	t.undo = append(t.undo, func() {
		t.events[n] = nil
		t.events = t.events[:n]
		t.lastPos--
	})
	set(t, t.chains, org, append(t.chains[org], row))
	set(t, t.heads, org, audit.Head{Seq: ev.Seq, Hash: ev.Hash, Checkpoint: ev.HeadCheckpoint})
	return nil
}

func (t *tx) ListAudit(_ context.Context, f store.AuditFilter) ([]audit.Event, int64, error) {
	var (
		out  []audit.Event
		next int64
	)
	// positions only grow along events, so the cursor is a binary search away
	start := sort.Search(len(t.events), func(i int) bool { return t.events[i].pos > f.Cursor })
	for _, r := range t.events[start:] {
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
		if auditMatches(f, r.ev) {
			out = append(out, cloneEvent(r.ev))
			next = r.pos
		}
	}
	return out, next, nil
}

func auditMatches(f store.AuditFilter, ev audit.Event) bool {
	return (f.AllOrgs || ev.Organization == f.Org) &&
		(f.Since == nil || !ev.At.Before(*f.Since)) &&
		(f.Until == nil || ev.At.Before(*f.Until)) &&
		(f.Actor == "" || ev.Actor == f.Actor) &&
		(f.Action == "" || ev.Action == f.Action)
}

func (t *tx) AuditChain(_ context.Context, org string) ([]audit.Event, error) {
	chain := t.chains[org]
	out := make([]audit.Event, len(chain))
	for i, r := range chain {
		out[i] = cloneEvent(r.ev)
	}
	return out, nil
}

// ---- outbox

func (t *tx) AppendOutbox(_ context.Context, e store.OutboxEntry) (int64, error) {
	if err := t.writable(); err != nil {
		return 0, err
	}
	n := len(t.outbox)
	e = cloneOutbox(e)
	e.Seq = int64(n) + 1
	t.outbox = append(t.outbox, e)
	t.undo = append(t.undo, func() {
		t.outbox[n] = store.OutboxEntry{}
		t.outbox = t.outbox[:n]
	})
	return e.Seq, nil
}

func (t *tx) PendingOutbox(_ context.Context, limit int) ([]store.OutboxEntry, error) {
	var out []store.OutboxEntry
	for _, e := range t.outbox {
		if limit > 0 && len(out) == limit {
			break
		}
		if e.AppliedAt == nil {
			out = append(out, cloneOutbox(e))
		}
	}
	return out, nil
}

func (t *tx) MarkApplied(_ context.Context, seq int64, revision string, at time.Time) error {
	if err := t.writable(); err != nil {
		return err
	}
	i, err := t.outboxIndex(seq)
	if err != nil {
		return err
	}
	old := t.outbox[i]
	e := old // shares Updates and DeleteFilters with old; neither is edited in place
	e.AppliedAt, e.Revision = &at, revision
	t.outbox[i] = e
	t.undo = append(t.undo, func() { t.outbox[i] = old })
	return nil
}

func (t *tx) OutboxApplied(_ context.Context, seq int64) (bool, error) {
	i, err := t.outboxIndex(seq)
	if err != nil {
		return false, err
	}
	return t.outbox[i].AppliedAt != nil, nil
}

func (t *tx) outboxIndex(seq int64) (int, error) {
	if seq < 1 || seq > int64(len(t.outbox)) {
		return 0, fmt.Errorf("%w: outbox entry %d", trellis.ErrNotFound, seq)
	}
	return int(seq - 1), nil
}

// ---- copies: every row crosses the API boundary as a deep copy

func same[T any](v T) T { return v }

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}

func cloneOrg(o store.Org) store.Org {
	o.Domains = slices.Clone(o.Domains)
	for i := range o.Domains {
		o.Domains[i].VerifiedAt = clonePtr(o.Domains[i].VerifiedAt)
	}
	o.Branding = maps.Clone(o.Branding)
	o.FeatureFlags = maps.Clone(o.FeatureFlags)
	return o
}

func cloneMembership(m store.Membership) store.Membership {
	m.Roles = slices.Clone(m.Roles)
	return m
}

func cloneGroup(g store.Group) store.Group {
	g.Roles = slices.Clone(g.Roles)
	return g
}

func cloneRole(r store.Role) store.Role {
	r.Permissions = slices.Clone(r.Permissions)
	return r
}

func cloneInvitation(inv store.Invitation) store.Invitation {
	inv.Roles = slices.Clone(inv.Roles)
	inv.Permissions = slices.Clone(inv.Permissions)
	inv.TokenHash = bytes.Clone(inv.TokenHash)
	inv.AcceptedAt = clonePtr(inv.AcceptedAt)
	inv.RevokedAt = clonePtr(inv.RevokedAt)
	return inv
}

func cloneDelegation(d store.Delegation) store.Delegation {
	d.Scopes = slices.Clone(d.Scopes)
	d.Via = slices.Clone(d.Via)
	d.ExpiresAt = clonePtr(d.ExpiresAt)
	d.ApprovedAt = clonePtr(d.ApprovedAt)
	d.RevokedAt = clonePtr(d.RevokedAt)
	return d
}

func cloneImpersonation(im store.Impersonation) store.Impersonation {
	im.Scopes = slices.Clone(im.Scopes)
	im.ApprovedAt = clonePtr(im.ApprovedAt)
	im.StartedAt = clonePtr(im.StartedAt)
	im.ExpiresAt = clonePtr(im.ExpiresAt)
	im.EndedAt = clonePtr(im.EndedAt)
	return im
}

func cloneServiceAccount(sa store.ServiceAccount) store.ServiceAccount {
	sa.Roles = slices.Clone(sa.Roles)
	return sa
}

func cloneAPIKey(k store.APIKey) store.APIKey {
	k.Hash = bytes.Clone(k.Hash)
	k.Permissions = slices.Clone(k.Permissions)
	k.ExpiresAt = clonePtr(k.ExpiresAt)
	k.LastUsedAt = clonePtr(k.LastUsedAt)
	k.RevokedAt = clonePtr(k.RevokedAt)
	return k
}

func cloneEvent(ev audit.Event) audit.Event {
	ev.Details = deepCopy(ev.Details)
	return ev
}

func cloneOutbox(e store.OutboxEntry) store.OutboxEntry {
	e.Updates = slices.Clone(e.Updates)
	for i := range e.Updates {
		r := &e.Updates[i].Relationship
		r.ExpiresAt = clonePtr(r.ExpiresAt)
		if r.Caveat != nil {
			r.Caveat = &engine.Caveat{Name: r.Caveat.Name, Context: deepCopy(r.Caveat.Context)}
		}
	}
	e.DeleteFilters = slices.Clone(e.DeleteFilters)
	for i := range e.DeleteFilters {
		e.DeleteFilters[i].Subject = clonePtr(e.DeleteFilters[i].Subject)
	}
	e.AppliedAt = clonePtr(e.AppliedAt)
	return e
}

// deepCopy copies the maps, slices and pointers inside v, which holds
// caller-chosen values (audit details, caveat contexts) of any shape.
func deepCopy[T any](v T) T {
	return copyValue(reflect.ValueOf(&v).Elem()).Interface().(T)
}

func copyValue(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Map:
		if v.IsNil() {
			return v
		}
		m := reflect.MakeMapWithSize(v.Type(), v.Len())
		for it := v.MapRange(); it.Next(); {
			m.SetMapIndex(it.Key(), copyValue(it.Value()))
		}
		return m
	case reflect.Slice:
		if v.IsNil() {
			return v
		}
		s := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := range v.Len() {
			s.Index(i).Set(copyValue(v.Index(i)))
		}
		return s
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		p := reflect.New(v.Type().Elem())
		p.Elem().Set(copyValue(v.Elem()))
		return p
	case reflect.Interface:
		if v.IsNil() {
			return v
		}
		out := reflect.New(v.Type()).Elem()
		out.Set(copyValue(v.Elem()))
		return out
	}
	return v // scalars, and structs, which JSON-shaped values do not hold
}

// Savepoint undoes fn's writes (the undo entries it added) when fn fails.
// Flush has nothing to send: the memory store writes at once, deferred or not.
func (t *tx) Flush(context.Context) error {
	if t.done {
		return errTxDone
	}
	return nil
}

func (t *tx) Savepoint(_ context.Context, fn func() error) error {
	if err := t.writable(); err != nil {
		return err
	}
	mark := len(t.undo)
	if err := fn(); err != nil {
		for i := len(t.undo) - 1; i >= mark; i-- {
			t.undo[i]()
		}
		t.undo = t.undo[:mark]
		return err
	}
	return nil
}
