package conformance

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/audit"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// Run runs the suite. newStore is called once per subtest, with that
// subtest's t (so it can register cleanup), and must return an empty store.
//
// Rows are compared after normalizing what a database may legitimately change:
// times become UTC truncated to microseconds (PostgreSQL keeps no more), and
// empty slices and maps become nil (the contract gives nil and empty no
// different meaning). Nil and non-nil pointers, and every value, must survive.
// Inputs keep to what a database returns unchanged: times already truncated to
// microseconds, and audit details and caveat contexts made of JSON strings,
// bools, objects and arrays.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"orgs/round trip", testOrgRoundTrip},
		{"orgs/not found", testOrgNotFound},
		{"orgs/conflicts", testOrgConflicts},
		{"orgs/verified domain unique", testOrgVerifiedDomain},
		{"orgs/update", testOrgUpdate},
		{"orgs/delete", testOrgDelete},
		{"orgs/list order, filters and pages", testOrgList},
		{"orgs/children", testOrgChildren},
		{"orgs/policy", testOrgPolicy},
		{"users/round trip and lookups", testUsers},
		{"users/update", testUserUpdate},
		{"members/put, upsert and delete", testMembership},
		{"members/listings", testMemberListings},
		{"groups/round trip, update and list", testGroups},
		{"groups/members", testGroupMembers},
		{"groups/delete cascades", testGroupDelete},
		{"roles", testRoles},
		{"invitations", testInvitations},
		{"service accounts", testServiceAccounts},
		{"service accounts/api keys", testAPIKeys},
		{"service accounts/delete cascades", testServiceAccountDelete},
		{"provider API keys", testProviderKeys},
		{"delegations", testDelegations},
		{"delegations/via", testDelegationsVia},
		{"impersonations", testImpersonations},
		{"audit/heads and append", testAuditHeads},
		{"audit/checkpoints", testAuditCheckpoints},
		{"audit/list filters and cursor", testAuditList},
		{"audit/chain", testAuditChain},
		{"outbox", testOutbox},
		{"scim/tokens", testSCIMTokens},
		{"scim/mappings", testSCIMMappings},
		{"scim/resources", testSCIMResources},
		{"scim/sync status", testSCIMSync},
		{"outbox/claim", testOutboxClaim},
		{"schema versions", testSchemaVersions},
		{"signing keys", testSigningKeys},
		{"provider grants/authorization requests", testAuthRequests},
		{"provider grants/grants and revocation", testGrants},
		{"provider grants/tokens", testProviderTokens},
		{"provider grants/sweep", testProviderSweep},
		{"provider grants/pending logins", testPendingLogins},
		{"changelog", testChangelog},
		{"changelog/index and compaction", testChangelogIndex},
		{"tx/fn error passes through", testTxErrorPassesThrough},
		{"tx/rollback undoes every write", testTxRollback},
		{"tx/savepoints undo their part", testSavepoints},
		{"tx/deferred writes", testDeferredWrites},
		{"scim/lookup", testLookupSCIM},
		{"tx/commit makes every write visible", testTxCommitEach},
		{"tx/reads see own writes", testTxReadOwnWrites},
		{"tx/writes fail in Read", testReadOnly},
		{"tx/cancelled context", testCancelledContext},
		{"rows are copies", testCopies},
		{"ready and close", testReadyClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

// ---- fixtures

// base is the suite's clock, already at microsecond precision.
var base = time.Date(2026, time.March, 14, 9, 26, 53, 589793000, time.UTC)

func at(minute int) time.Time { return base.Add(time.Duration(minute) * time.Minute) }

func ptr[T any](v T) *T { return &v }

func sha(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

var errBoom = errors.New("boom: the closure failed")

func acmeOrg() store.Org {
	return store.Org{
		ID: "org_a1", Slug: "acme", Name: "Acme Corp", Status: store.StatusActive,
		Domains: []store.Domain{
			{Domain: "acme-corp.example", Token: "trellis-verify=77c1"},
			{Domain: "acme.example", Verified: true, Token: "trellis-verify=3f9a", Method: "dns", VerifiedAt: ptr(at(5))},
		},
		Branding:     map[string]string{"logo": "https://cdn.example/acme.png", "color": "#ff6600"},
		FeatureFlags: map[string]bool{"sso": true, "scim": false},
		CreatedAt:    at(0),
		UpdatedAt:    at(5),
	}
}

func orgRow(id, slug, name, parent string) store.Org {
	return store.Org{ID: id, Slug: slug, Name: name, Parent: parent, Status: store.StatusActive, CreatedAt: at(0), UpdatedAt: at(0)}
}

func verified(domain string) store.Domain {
	return store.Domain{Domain: domain, Verified: true, Token: "trellis-verify=" + domain, Method: "manual", VerifiedAt: ptr(at(1))}
}

func userRow(id, email string) store.User {
	return store.User{ID: id, Email: email, Name: "User " + id, ExternalID: "ext-" + id, Status: store.StatusActive, CreatedAt: at(0), UpdatedAt: at(1)}
}

func memberRow(org, user string, roles ...string) store.Membership {
	return store.Membership{Org: org, User: user, Roles: roles, Status: store.StatusActive, JoinedAt: at(2), AuthenticatedVia: "api", UpdatedAt: at(3)}
}

func groupRow(id, org string) store.Group {
	return store.Group{ID: id, Org: org, Name: "Group " + id, Description: "the " + id + " team", Roles: []string{"member", "role_viewer"}, CreatedAt: at(0), UpdatedAt: at(1)}
}

func groupMember(group, kind, id string) store.GroupMember {
	return store.GroupMember{Group: group, Kind: kind, ID: id, AddedAt: at(4)}
}

func roleRow(id, org, key string) store.Role {
	return store.Role{ID: id, Org: org, Key: key, Name: "Role " + key, Description: "can do " + key, Permissions: []string{"billing.read", "billing.write"}, CreatedAt: at(0), UpdatedAt: at(2)}
}

func invitationRow(id, org, token string) store.Invitation {
	return store.Invitation{ID: id, Org: org, Email: id + "@invitee.example", Roles: []string{"admin"}, TokenHash: sha(token), InvitedBy: "service_account:sa_a1", InviterKey: "key_a1", InviterLimit: []string{"manage_members"}, Permissions: []string{"access", "manage"}, CreatedAt: at(0), ExpiresAt: at(60 * 24 * 7)}
}

func accountRow(id, org string) store.ServiceAccount {
	return store.ServiceAccount{ID: id, Org: org, Name: "Robot " + id, Description: "deploys things", Roles: []string{"admin"}, CreatedAt: at(0), UpdatedAt: at(1)}
}

func keyRow(id, account, org string) store.APIKey {
	return store.APIKey{ID: id, ServiceAccount: account, Org: org, Hash: sha("secret-" + id), Permissions: []string{"organization.read"}, CreatedAt: at(0), ExpiresAt: ptr(at(60 * 24 * 90))}
}

func delegationRow(id, org string, via ...string) store.Delegation {
	return store.Delegation{
		ID: id, Org: org, Grantee: "user:usr_b2", Scopes: []string{"members", "roles"}, Subtree: true,
		ExpiresAt: ptr(at(60 * 24 * 30)), Status: store.DelegationActive, GrantedBy: "user:usr_a1", Via: via,
		Reason: "covering for the regional admin", CreatedAt: at(0),
	}
}

func impersonationRow(id, org string) store.Impersonation {
	return store.Impersonation{
		ID: id, Org: org, Actor: "usr_a1", Target: "usr_b2", Reason: "support ticket 4521",
		Scopes: []string{"organization.read", "member.read"}, Duration: 30 * time.Minute,
		Status: store.ImpersonationPending, RequestedBy: "user:usr_a1", CreatedAt: at(0),
	}
}

func event(org string, seq int64, minute int, actor, action string) audit.Event {
	return audit.Event{
		Seq: seq, At: at(minute), Actor: actor, Action: action, Target: "organization:" + org, Organization: org,
		Details:  map[string]any{"via": "api", "changed": map[string]any{"slug": []any{"old", "new"}}, "dryRun": false},
		PrevHash: fmt.Sprintf("hash-%s-%d", org, seq-1),
		Hash:     fmt.Sprintf("hash-%s-%d", org, seq),
	}
}

func outboxEntry(action string) store.OutboxEntry {
	return store.OutboxEntry{
		Action: action,
		Updates: []engine.RelationshipUpdate{
			{Operation: engine.OpTouch, Relationship: engine.Relationship{
				Resource: engine.ObjectRef{Type: "organization", ID: "org_a1"}, Relation: "member",
				Subject:   engine.SubjectRef{Object: engine.ObjectRef{Type: "user", ID: "usr_a1"}},
				Caveat:    &engine.Caveat{Name: "ip_allowlist", Context: map[string]any{"cidrs": []any{"10.0.0.0/8"}}},
				ExpiresAt: ptr(at(90)),
			}},
			{Operation: engine.OpDelete, Relationship: engine.Relationship{
				Resource: engine.ObjectRef{Type: "group", ID: "grp_a1"}, Relation: "member",
				Subject: engine.SubjectRef{Object: engine.ObjectRef{Type: "group", ID: "grp_b2"}, Relation: "member"},
			}},
		},
		DeleteFilters: []engine.RelationshipFilter{
			{ResourceType: "organization", ResourceID: "org_a1", Relation: "admin", Subject: &engine.SubjectFilter{Type: "user", ID: "usr_b2"}},
			{ResourceType: "group", ResourceID: "grp_c3"},
		},
		CreatedAt: at(7),
	}
}

// ---- helpers

// call runs m(tx, ctx, a) in a Read.
func call[A, T any](t *testing.T, s store.Store, m func(store.Tx, context.Context, A) (T, error), a A) (T, error) {
	var out T
	err := s.Read(t.Context(), func(tx store.Tx) error {
		var err error
		out, err = m(tx, t.Context(), a)
		return err
	})
	return out, err
}

// get is call that must succeed.
func get[A, T any](t *testing.T, s store.Store, m func(store.Tx, context.Context, A) (T, error), a A) T {
	t.Helper()
	v, err := call(t, s, m, a)
	if err != nil {
		t.Fatalf("read %v: %v", a, err)
	}
	return v
}

// exec runs m(tx, ctx, a) in its own InTx.
func exec[A any](t *testing.T, s store.Store, m func(store.Tx, context.Context, A) error, a A) error {
	return s.InTx(t.Context(), func(tx store.Tx) error { return m(tx, t.Context(), a) })
}

// do is exec that must succeed.
func do[A any](t *testing.T, s store.Store, m func(store.Tx, context.Context, A) error, a A) {
	t.Helper()
	if err := exec(t, s, m, a); err != nil {
		t.Fatalf("write %v: %v", a, err)
	}
}

func mustTx(t *testing.T, s store.Store, fn func(tx store.Tx) error) {
	t.Helper()
	if err := s.InTx(t.Context(), fn); err != nil {
		t.Fatalf("InTx: %v", err)
	}
}

func mustRead(t *testing.T, s store.Store, fn func(tx store.Tx) error) {
	t.Helper()
	if err := s.Read(t.Context(), fn); err != nil {
		t.Fatalf("Read: %v", err)
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: got error %v, want %v", what, err, target)
	}
}

// same compares rows after norm.
func same[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if g, w := norm(got), norm(want); !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %s\nwant %s", what, show(g), show(w))
	}
}

func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%+v", v)
	}
	return string(b)
}

// keys extracts the listing key of each row, for order checks.
func keys[T any](rows []T, key func(T) string) []string {
	out := []string{}
	for _, r := range rows {
		out = append(out, key(r))
	}
	return out
}

func wantKeys(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: got %q, want %q", what, got, want)
	}
}

func orgID(o store.Org) string             { return o.ID }
func orgSlug(o store.Org) string           { return o.Slug }
func memberUser(m store.Membership) string { return m.User }
func memberOrg(m store.Membership) string  { return m.Org }
func eventHash(ev audit.Event) string      { return ev.Hash }
func delegationID(d store.Delegation) string {
	return d.ID
}
func outboxAction(e store.OutboxEntry) string {
	return e.Action
}

var timeType = reflect.TypeFor[time.Time]()

// norm returns a deep copy of v with every time in UTC at microsecond
// precision and every empty slice or map nil: what a database may change.
func norm[T any](v T) T {
	return normValue(reflect.ValueOf(&v).Elem()).Interface().(T)
}

func normValue(v reflect.Value) reflect.Value {
	if v.Type() == timeType {
		return reflect.ValueOf(v.Interface().(time.Time).UTC().Truncate(time.Microsecond))
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		p := reflect.New(v.Type().Elem())
		p.Elem().Set(normValue(v.Elem()))
		return p
	case reflect.Interface:
		if v.IsNil() {
			return v
		}
		out := reflect.New(v.Type()).Elem()
		out.Set(normValue(v.Elem()))
		return out
	case reflect.Slice:
		if v.Len() == 0 {
			return reflect.Zero(v.Type())
		}
		s := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := range v.Len() {
			s.Index(i).Set(normValue(v.Index(i)))
		}
		return s
	case reflect.Map:
		if v.Len() == 0 {
			return reflect.Zero(v.Type())
		}
		m := reflect.MakeMapWithSize(v.Type(), v.Len())
		for it := v.MapRange(); it.Next(); {
			m.SetMapIndex(it.Key(), normValue(it.Value()))
		}
		return m
	case reflect.Struct:
		out := reflect.New(v.Type()).Elem()
		out.Set(v)
		for i := range v.NumField() {
			if f := out.Field(i); f.CanSet() {
				f.Set(normValue(v.Field(i)))
			}
		}
		return out
	}
	return v
}

// ---- organizations

func testOrgRoundTrip(t *testing.T, s store.Store) {
	full := acmeOrg()
	// a bare row: no domains or maps, a parent, and a time in another zone
	bare := orgRow("org_b2", "beta", "Beta", "org_a1")
	bare.Status = store.StatusSuspended
	bare.CreatedAt = at(1).In(time.FixedZone("CET", 3600))
	mustTx(t, s, func(tx store.Tx) error {
		if err := tx.InsertOrg(t.Context(), full); err != nil {
			return err
		}
		return tx.InsertOrg(t.Context(), bare)
	})
	for _, want := range []store.Org{full, bare} {
		same(t, "GetOrg "+want.ID, get(t, s, store.Tx.GetOrg, want.ID), want)
		same(t, "GetOrgBySlug "+want.Slug, get(t, s, store.Tx.GetOrgBySlug, want.Slug), want)
	}
	same(t, "OrgByVerifiedDomain", get(t, s, store.Tx.OrgByVerifiedDomain, "acme.example"), full)
}

func testOrgNotFound(t *testing.T, s store.Store) {
	do(t, s, store.Tx.InsertOrg, acmeOrg())
	_, err := call(t, s, store.Tx.GetOrg, "org_zz")
	wantErr(t, "GetOrg unknown", err, trellis.ErrNotFound)
	_, err = call(t, s, store.Tx.GetOrgBySlug, "nobody")
	wantErr(t, "GetOrgBySlug unknown", err, trellis.ErrNotFound)
	_, err = call(t, s, store.Tx.OrgByVerifiedDomain, "unknown.example")
	wantErr(t, "OrgByVerifiedDomain unknown", err, trellis.ErrNotFound)
	_, err = call(t, s, store.Tx.OrgByVerifiedDomain, "acme-corp.example")
	wantErr(t, "OrgByVerifiedDomain of a claimed, unverified domain", err, trellis.ErrNotFound)
	wantErr(t, "UpdateOrg unknown", exec(t, s, store.Tx.UpdateOrg, orgRow("org_zz", "zz", "ZZ", "")), trellis.ErrNotFound)
	wantErr(t, "DeleteOrg unknown", exec(t, s, store.Tx.DeleteOrg, "org_zz"), trellis.ErrNotFound)
}

func testOrgConflicts(t *testing.T, s store.Store) {
	do(t, s, store.Tx.InsertOrg, acmeOrg())
	do(t, s, store.Tx.InsertOrg, orgRow("org_b2", "beta", "Beta", ""))

	wantErr(t, "InsertOrg duplicate id", exec(t, s, store.Tx.InsertOrg, orgRow("org_a1", "other", "Other", "")), trellis.ErrConflict)
	wantErr(t, "InsertOrg duplicate slug", exec(t, s, store.Tx.InsertOrg, orgRow("org_c3", "acme", "Other", "")), trellis.ErrConflict)
	wantErr(t, "UpdateOrg to a taken slug", exec(t, s, store.Tx.UpdateOrg, orgRow("org_b2", "acme", "Beta", "")), trellis.ErrConflict)

	same(t, "org_a1 after failed writes", get(t, s, store.Tx.GetOrg, "org_a1"), acmeOrg())
	same(t, "org_b2 after failed update", get(t, s, store.Tx.GetOrg, "org_b2"), orgRow("org_b2", "beta", "Beta", ""))
	_, err := call(t, s, store.Tx.GetOrg, "org_c3")
	wantErr(t, "org with duplicate slug was not stored", err, trellis.ErrNotFound)
	_, err = call(t, s, store.Tx.GetOrgBySlug, "other")
	wantErr(t, "org with duplicate id was not stored", err, trellis.ErrNotFound)

	// an org keeps its own slug and verified domain across an update
	renamed := acmeOrg()
	renamed.Name = "Acme Corporation"
	do(t, s, store.Tx.UpdateOrg, renamed)
	same(t, "org_a1 renamed", get(t, s, store.Tx.GetOrg, "org_a1"), renamed)
}

func testOrgVerifiedDomain(t *testing.T, s store.Store) {
	do(t, s, store.Tx.InsertOrg, acmeOrg()) // verified acme.example

	b := orgRow("org_b2", "beta", "Beta", "")
	b.Domains = []store.Domain{verified("acme.example")}
	wantErr(t, "InsertOrg verifying another org's domain", exec(t, s, store.Tx.InsertOrg, b), trellis.ErrConflict)

	// a claim that is not verified does not conflict
	b.Domains = []store.Domain{{Domain: "acme.example", Token: "trellis-verify=b2"}}
	do(t, s, store.Tx.InsertOrg, b)

	b.Domains = []store.Domain{verified("acme.example")}
	wantErr(t, "UpdateOrg verifying another org's domain", exec(t, s, store.Tx.UpdateOrg, b), trellis.ErrConflict)
	same(t, "OrgByVerifiedDomain", get(t, s, store.Tx.OrgByVerifiedDomain, "acme.example").ID, "org_a1")

	// once acme gives it up, beta may verify it
	a := acmeOrg()
	a.Domains = a.Domains[:1]
	do(t, s, store.Tx.UpdateOrg, a)
	_, err := call(t, s, store.Tx.OrgByVerifiedDomain, "acme.example")
	wantErr(t, "OrgByVerifiedDomain after unverifying", err, trellis.ErrNotFound)
	do(t, s, store.Tx.UpdateOrg, b)
	same(t, "OrgByVerifiedDomain after beta verified", get(t, s, store.Tx.OrgByVerifiedDomain, "acme.example"), b)
}

func testOrgUpdate(t *testing.T, s store.Store) {
	do(t, s, store.Tx.InsertOrg, acmeOrg())
	do(t, s, store.Tx.InsertOrg, orgRow("org_p9", "parent", "Parent", ""))

	u := acmeOrg()
	u.Slug, u.Name, u.Parent, u.Status = "acme-inc", "Acme Inc", "org_p9", store.StatusSuspended
	u.Domains = []store.Domain{{Domain: "acme-corp.example", Verified: true, Token: "trellis-verify=77c1", Method: "manual", VerifiedAt: ptr(at(8))}}
	u.Branding = nil
	u.FeatureFlags = map[string]bool{"sso": false, "audit-export": true}
	u.UpdatedAt = at(8)
	do(t, s, store.Tx.UpdateOrg, u)

	same(t, "GetOrg after update", get(t, s, store.Tx.GetOrg, "org_a1"), u)
	same(t, "GetOrgBySlug new slug", get(t, s, store.Tx.GetOrgBySlug, "acme-inc"), u)
	_, err := call(t, s, store.Tx.GetOrgBySlug, "acme")
	wantErr(t, "GetOrgBySlug old slug", err, trellis.ErrNotFound)
	_, err = call(t, s, store.Tx.OrgByVerifiedDomain, "acme.example")
	wantErr(t, "OrgByVerifiedDomain of a dropped domain", err, trellis.ErrNotFound)
	same(t, "OrgByVerifiedDomain of a newly verified domain", get(t, s, store.Tx.OrgByVerifiedDomain, "acme-corp.example").ID, "org_a1")

	// the old slug and domain are free again
	n := orgRow("org_n3", "acme", "New Acme", "")
	n.Domains = []store.Domain{verified("acme.example")}
	do(t, s, store.Tx.InsertOrg, n)
	same(t, "old slug reused", get(t, s, store.Tx.GetOrgBySlug, "acme").ID, "org_n3")
}

func testOrgDelete(t *testing.T, s store.Store) {
	do(t, s, store.Tx.InsertOrg, acmeOrg())
	do(t, s, store.Tx.InsertOrg, orgRow("org_b2", "beta", "Beta", ""))
	do(t, s, store.Tx.DeleteOrg, "org_a1")

	_, err := call(t, s, store.Tx.GetOrg, "org_a1")
	wantErr(t, "GetOrg deleted", err, trellis.ErrNotFound)
	_, err = call(t, s, store.Tx.GetOrgBySlug, "acme")
	wantErr(t, "GetOrgBySlug deleted", err, trellis.ErrNotFound)
	_, err = call(t, s, store.Tx.OrgByVerifiedDomain, "acme.example")
	wantErr(t, "OrgByVerifiedDomain deleted", err, trellis.ErrNotFound)
	wantErr(t, "DeleteOrg twice", exec(t, s, store.Tx.DeleteOrg, "org_a1"), trellis.ErrNotFound)
	same(t, "other org untouched", get(t, s, store.Tx.GetOrg, "org_b2"), orgRow("org_b2", "beta", "Beta", ""))

	// the deleted org's slug and domain are free again, for another org
	again := acmeOrg()
	again.ID = "org_n9"
	do(t, s, store.Tx.InsertOrg, again)
	same(t, "slug reused", get(t, s, store.Tx.GetOrgBySlug, "acme"), again)
	same(t, "domain reused", get(t, s, store.Tx.OrgByVerifiedDomain, "acme.example"), again)
}

func testOrgList(t *testing.T, s store.Store) {
	// slug order differs from id order and from insertion order
	for _, o := range []store.Org{
		orgRow("org_a1", "delta", "Delta Works", ""),
		orgRow("org_b2", "alpha", "Alpha Industries", ""),
		orgRow("org_c3", "charlie", "Charlie Acme Subsidiary", "org_a1"),
		orgRow("org_d4", "bravo", "Bravo", "org_a1"),
		orgRow("org_e5", "acme-echo", "Echo", "org_c3"),
		orgRow("org_f6", "foxtrot", "Foxtrot", ""),
	} {
		do(t, s, store.Tx.InsertOrg, o)
	}
	cases := []struct {
		name string
		f    store.OrgFilter
		want []string // slugs
	}{
		{"all", store.OrgFilter{}, []string{"acme-echo", "alpha", "bravo", "charlie", "delta", "foxtrot"}},
		{"top level", store.OrgFilter{Parent: ptr("")}, []string{"alpha", "delta", "foxtrot"}},
		{"children of org_a1", store.OrgFilter{Parent: ptr("org_a1")}, []string{"bravo", "charlie"}},
		{"children of a leaf", store.OrgFilter{Parent: ptr("org_e5")}, nil},
		{"query matches slug or name, any case", store.OrgFilter{Query: "aCmE"}, []string{"acme-echo", "charlie"}},
		{"query inside a word", store.OrgFilter{Query: "WORK"}, []string{"delta"}},
		{"query and parent", store.OrgFilter{Query: "acme", Parent: ptr("org_a1")}, []string{"charlie"}},
		{"query matching nothing", store.OrgFilter{Query: "zulu"}, nil},
		{"ids", store.OrgFilter{IDs: []string{"org_f6", "org_b2", "org_zz"}}, []string{"alpha", "foxtrot"}},
		{"empty ids select none", store.OrgFilter{IDs: []string{}}, nil},
		{"ids and parent", store.OrgFilter{IDs: []string{"org_a1", "org_c3"}, Parent: ptr("")}, []string{"delta"}},
		{"first page", store.OrgFilter{Page: store.Page{Limit: 2}}, []string{"acme-echo", "alpha"}},
		{"second page", store.OrgFilter{Page: store.Page{After: "alpha", Limit: 2}}, []string{"bravo", "charlie"}},
		{"last page", store.OrgFilter{Page: store.Page{After: "charlie", Limit: 2}}, []string{"delta", "foxtrot"}},
		{"past the end", store.OrgFilter{Page: store.Page{After: "foxtrot", Limit: 2}}, nil},
		{"after a slug that does not exist", store.OrgFilter{Page: store.Page{After: "b"}}, []string{"bravo", "charlie", "delta", "foxtrot"}},
		{"page of a filter", store.OrgFilter{Parent: ptr(""), Page: store.Page{After: "alpha", Limit: 1}}, []string{"delta"}},
	}
	for _, c := range cases {
		wantKeys(t, "ListOrgs "+c.name, keys(get(t, s, store.Tx.ListOrgs, c.f), orgSlug), c.want)
	}
	// the rows themselves are whole
	got := get(t, s, store.Tx.ListOrgs, store.OrgFilter{IDs: []string{"org_c3"}})
	same(t, "listed row", got, []store.Org{orgRow("org_c3", "charlie", "Charlie Acme Subsidiary", "org_a1")})

	// walking pages visits every org once
	var walked []string
	p := store.Page{Limit: 4}
	for range 10 {
		page := get(t, s, store.Tx.ListOrgs, store.OrgFilter{Page: p})
		if len(page) == 0 {
			break
		}
		walked = append(walked, keys(page, orgSlug)...)
		p.After = page[len(page)-1].Slug
	}
	wantKeys(t, "walked pages", walked, []string{"acme-echo", "alpha", "bravo", "charlie", "delta", "foxtrot"})
}

func testOrgChildren(t *testing.T, s store.Store) {
	for _, o := range []store.Org{
		orgRow("org_a1", "root", "Root", ""),
		orgRow("org_d4", "alpha", "Alpha", "org_a1"), // id order differs from slug order
		orgRow("org_c3", "bravo", "Bravo", "org_a1"),
		orgRow("org_e5", "grandchild", "Grandchild", "org_c3"),
		orgRow("org_f6", "other-root", "Other", ""),
	} {
		do(t, s, store.Tx.InsertOrg, o)
	}
	wantKeys(t, "Children org_a1", keys(get(t, s, store.Tx.Children, "org_a1"), orgID), []string{"org_c3", "org_d4"})
	wantKeys(t, "Children org_c3", keys(get(t, s, store.Tx.Children, "org_c3"), orgID), []string{"org_e5"})
	wantKeys(t, "Children of a leaf", keys(get(t, s, store.Tx.Children, "org_e5"), orgID), nil)
	wantKeys(t, "Children of an unknown org", keys(get(t, s, store.Tx.Children, "org_zz"), orgID), nil)
	same(t, "child row", get(t, s, store.Tx.Children, "org_c3"), []store.Org{orgRow("org_e5", "grandchild", "Grandchild", "org_c3")})
}

func testOrgPolicy(t *testing.T, s store.Store) {
	a := acmeOrg()
	a.Policy = store.OrgPolicy{DelegationApproval: true, ImpersonationApproval: true}
	b := orgRow("org_b2", "beta", "Beta", "org_a1")
	b.Policy = store.OrgPolicy{DelegationRequired: true}
	c := orgRow("org_c3", "gamma", "Gamma", "org_a1") // the zero policy
	for _, o := range []store.Org{a, b, c} {
		do(t, s, store.Tx.InsertOrg, o)
	}
	same(t, "GetOrg with a policy", get(t, s, store.Tx.GetOrg, "org_a1"), a)
	same(t, "GetOrgBySlug with a policy", get(t, s, store.Tx.GetOrgBySlug, "beta"), b)
	same(t, "OrgByVerifiedDomain with a policy", get(t, s, store.Tx.OrgByVerifiedDomain, "acme.example"), a)
	same(t, "ListOrgs with policies", get(t, s, store.Tx.ListOrgs, store.OrgFilter{}), []store.Org{a, b, c})
	same(t, "Children with policies", get(t, s, store.Tx.Children, "org_a1"), []store.Org{b, c})

	// every switch turns on and off again on its own
	a.Policy = store.OrgPolicy{DelegationRequired: true}
	a.UpdatedAt = at(9)
	b.Policy = store.OrgPolicy{DelegationApproval: true, DelegationRequired: true, ImpersonationApproval: true}
	c.Policy = store.OrgPolicy{ImpersonationApproval: true}
	for _, o := range []store.Org{a, b, c} {
		do(t, s, store.Tx.UpdateOrg, o)
		same(t, "GetOrg after a policy update "+o.ID, get(t, s, store.Tx.GetOrg, o.ID), o)
	}
	b.Policy = store.OrgPolicy{}
	do(t, s, store.Tx.UpdateOrg, b)
	same(t, "GetOrg after clearing the policy", get(t, s, store.Tx.GetOrg, "org_b2"), b)
	same(t, "ListOrgs after policy updates", get(t, s, store.Tx.ListOrgs, store.OrgFilter{}), []store.Org{a, b, c})
}

// ---- users

func testUsers(t *testing.T, s store.Store) {
	ada := userRow("usr_a1", "ada@example.com")
	ada.CreatedAt = at(3).In(time.FixedZone("PST", -8*3600))
	bob := userRow("usr_b2", "bob@example.com")
	bob.ExternalID, bob.Status = "", store.StatusSuspended
	do(t, s, store.Tx.InsertUser, ada)
	do(t, s, store.Tx.InsertUser, bob)

	same(t, "GetUser", get(t, s, store.Tx.GetUser, "usr_a1"), ada)
	same(t, "GetUser", get(t, s, store.Tx.GetUser, "usr_b2"), bob)
	same(t, "GetUserByEmail", get(t, s, store.Tx.GetUserByEmail, "bob@example.com"), bob)

	_, err := call(t, s, store.Tx.GetUser, "usr_zz")
	wantErr(t, "GetUser unknown", err, trellis.ErrNotFound)
	_, err = call(t, s, store.Tx.GetUserByEmail, "zed@example.com")
	wantErr(t, "GetUserByEmail unknown", err, trellis.ErrNotFound)
	// normalizing emails is the caller's job: lookups are exact
	_, err = call(t, s, store.Tx.GetUserByEmail, "ADA@example.com")
	wantErr(t, "GetUserByEmail in another case", err, trellis.ErrNotFound)

	wantErr(t, "InsertUser duplicate id", exec(t, s, store.Tx.InsertUser, userRow("usr_a1", "other@example.com")), trellis.ErrConflict)
	wantErr(t, "InsertUser duplicate email", exec(t, s, store.Tx.InsertUser, userRow("usr_c3", "ada@example.com")), trellis.ErrConflict)
	_, err = call(t, s, store.Tx.GetUserByEmail, "other@example.com")
	wantErr(t, "user with duplicate id was not stored", err, trellis.ErrNotFound)
	_, err = call(t, s, store.Tx.GetUser, "usr_c3")
	wantErr(t, "user with duplicate email was not stored", err, trellis.ErrNotFound)
	same(t, "usr_a1 after failed writes", get(t, s, store.Tx.GetUser, "usr_a1"), ada)
}

func testUserUpdate(t *testing.T, s store.Store) {
	do(t, s, store.Tx.InsertUser, userRow("usr_a1", "ada@example.com"))
	do(t, s, store.Tx.InsertUser, userRow("usr_b2", "bob@example.com"))

	u := userRow("usr_a1", "ada.lovelace@example.com")
	u.Name, u.ExternalID, u.Status, u.UpdatedAt = "Ada Lovelace", "okta|123", store.StatusSuspended, at(9)
	do(t, s, store.Tx.UpdateUser, u)
	same(t, "GetUser after update", get(t, s, store.Tx.GetUser, "usr_a1"), u)
	same(t, "GetUserByEmail new email", get(t, s, store.Tx.GetUserByEmail, "ada.lovelace@example.com"), u)
	_, err := call(t, s, store.Tx.GetUserByEmail, "ada@example.com")
	wantErr(t, "GetUserByEmail old email", err, trellis.ErrNotFound)

	wantErr(t, "UpdateUser to a taken email", exec(t, s, store.Tx.UpdateUser, userRow("usr_a1", "bob@example.com")), trellis.ErrConflict)
	same(t, "usr_a1 after failed update", get(t, s, store.Tx.GetUser, "usr_a1"), u)
	wantErr(t, "UpdateUser unknown", exec(t, s, store.Tx.UpdateUser, userRow("usr_zz", "zed@example.com")), trellis.ErrNotFound)

	// the old email is free again
	do(t, s, store.Tx.InsertUser, userRow("usr_c3", "ada@example.com"))
	same(t, "old email reused", get(t, s, store.Tx.GetUserByEmail, "ada@example.com").ID, "usr_c3")
}

// ---- memberships

func getMembership(t *testing.T, s store.Store, org, user string) (store.Membership, error) {
	var m store.Membership
	err := s.Read(t.Context(), func(tx store.Tx) error {
		var err error
		m, err = tx.GetMembership(t.Context(), org, user)
		return err
	})
	return m, err
}

func listMembers(t *testing.T, s store.Store, org string, p store.Page) []store.Membership {
	t.Helper()
	var out []store.Membership
	mustRead(t, s, func(tx store.Tx) error {
		var err error
		out, err = tx.ListMembers(t.Context(), org, p)
		return err
	})
	return out
}

func testMembership(t *testing.T, s store.Store) {
	m := memberRow("org_a1", "usr_b2", "admin", "role_billing")
	m.AuthenticatedVia = "sso:okta"
	do(t, s, store.Tx.PutMembership, m)
	got, err := getMembership(t, s, "org_a1", "usr_b2")
	if err != nil {
		t.Fatal(err)
	}
	same(t, "GetMembership", got, m)

	// Put again replaces the row
	m2 := memberRow("org_a1", "usr_b2", "member")
	m2.Status, m2.UpdatedAt = store.StatusSuspended, at(20)
	do(t, s, store.Tx.PutMembership, m2)
	got, err = getMembership(t, s, "org_a1", "usr_b2")
	if err != nil {
		t.Fatal(err)
	}
	same(t, "GetMembership after upsert", got, m2)
	same(t, "ListMembers after upsert", listMembers(t, s, "org_a1", store.Page{}), []store.Membership{m2})

	_, err = getMembership(t, s, "org_a1", "usr_zz")
	wantErr(t, "GetMembership unknown user", err, trellis.ErrNotFound)
	_, err = getMembership(t, s, "org_zz", "usr_b2")
	wantErr(t, "GetMembership unknown org", err, trellis.ErrNotFound)

	del := func(org, user string) error {
		return s.InTx(t.Context(), func(tx store.Tx) error { return tx.DeleteMembership(t.Context(), org, user) })
	}
	if err := del("org_a1", "usr_b2"); err != nil {
		t.Fatal(err)
	}
	_, err = getMembership(t, s, "org_a1", "usr_b2")
	wantErr(t, "GetMembership deleted", err, trellis.ErrNotFound)
	wantErr(t, "DeleteMembership twice", del("org_a1", "usr_b2"), trellis.ErrNotFound)
}

func testMemberListings(t *testing.T, s store.Store) {
	for _, m := range []store.Membership{
		memberRow("org_b2", "usr_a1", "member"), // inserted before org_a1's, listed after it
		memberRow("org_d4", "usr_a1", "member"),
		memberRow("org_c3", "usr_a1", "member"),
		memberRow("org_a1", "usr_c3", "member"),
		memberRow("org_a1", "usr_a1", "admin"),
		memberRow("org_a1", "usr_e5", "member"),
		memberRow("org_a1", "usr_b2", "member"),
		memberRow("org_b2", "usr_d4", "admin"),
	} {
		do(t, s, store.Tx.PutMembership, m)
	}
	wantKeys(t, "ListMembers all", keys(listMembers(t, s, "org_a1", store.Page{}), memberUser), []string{"usr_a1", "usr_b2", "usr_c3", "usr_e5"})
	wantKeys(t, "ListMembers first page", keys(listMembers(t, s, "org_a1", store.Page{Limit: 2}), memberUser), []string{"usr_a1", "usr_b2"})
	wantKeys(t, "ListMembers second page", keys(listMembers(t, s, "org_a1", store.Page{After: "usr_b2", Limit: 2}), memberUser), []string{"usr_c3", "usr_e5"})
	wantKeys(t, "ListMembers past the end", keys(listMembers(t, s, "org_a1", store.Page{After: "usr_e5", Limit: 2}), memberUser), nil)
	wantKeys(t, "ListMembers other org", keys(listMembers(t, s, "org_b2", store.Page{}), memberUser), []string{"usr_a1", "usr_d4"})
	wantKeys(t, "ListMembers unknown org", keys(listMembers(t, s, "org_zz", store.Page{}), memberUser), nil)

	same(t, "UserMemberships", get(t, s, store.Tx.UserMemberships, "usr_a1"),
		[]store.Membership{memberRow("org_a1", "usr_a1", "admin"), memberRow("org_b2", "usr_a1", "member"),
			memberRow("org_c3", "usr_a1", "member"), memberRow("org_d4", "usr_a1", "member")})
	wantKeys(t, "UserMemberships one org", keys(get(t, s, store.Tx.UserMemberships, "usr_d4"), memberOrg), []string{"org_b2"})
	wantKeys(t, "UserMemberships unknown user", keys(get(t, s, store.Tx.UserMemberships, "usr_zz"), memberOrg), nil)
}

// ---- groups

func testGroups(t *testing.T, s store.Store) {
	for _, g := range []store.Group{groupRow("grp_c3", "org_a1"), groupRow("grp_a1", "org_a1"), groupRow("grp_b2", "org_b2")} {
		do(t, s, store.Tx.InsertGroup, g)
	}
	same(t, "GetGroup", get(t, s, store.Tx.GetGroup, "grp_a1"), groupRow("grp_a1", "org_a1"))
	same(t, "ListGroups", get(t, s, store.Tx.ListGroups, "org_a1"), []store.Group{groupRow("grp_a1", "org_a1"), groupRow("grp_c3", "org_a1")})
	same(t, "ListGroups unknown org", len(get(t, s, store.Tx.ListGroups, "org_zz")), 0)

	wantErr(t, "InsertGroup duplicate id", exec(t, s, store.Tx.InsertGroup, groupRow("grp_a1", "org_b2")), trellis.ErrConflict)
	_, err := call(t, s, store.Tx.GetGroup, "grp_zz")
	wantErr(t, "GetGroup unknown", err, trellis.ErrNotFound)

	u := groupRow("grp_a1", "org_a1")
	u.Name, u.Description, u.Roles, u.UpdatedAt = "Platform", "", []string{"admin"}, at(30)
	do(t, s, store.Tx.UpdateGroup, u)
	same(t, "GetGroup after update", get(t, s, store.Tx.GetGroup, "grp_a1"), u)
	wantErr(t, "UpdateGroup unknown", exec(t, s, store.Tx.UpdateGroup, groupRow("grp_zz", "org_a1")), trellis.ErrNotFound)
}

func groupsOf(t *testing.T, s store.Store, kind, id string) []store.GroupMember {
	t.Helper()
	var out []store.GroupMember
	mustRead(t, s, func(tx store.Tx) error {
		var err error
		out, err = tx.GroupsOf(t.Context(), kind, id)
		return err
	})
	return out
}

func deleteGroupMember(t *testing.T, s store.Store, group, kind, id string) error {
	return s.InTx(t.Context(), func(tx store.Tx) error { return tx.DeleteGroupMember(t.Context(), group, kind, id) })
}

func testGroupMembers(t *testing.T, s store.Store) {
	for _, g := range []string{"grp_a1", "grp_b2", "grp_c3"} {
		do(t, s, store.Tx.InsertGroup, groupRow(g, "org_a1"))
	}
	for _, m := range []store.GroupMember{
		groupMember("grp_a1", "user", "usr_b2"),
		groupMember("grp_a1", "user", "usr_a1"),
		groupMember("grp_a1", "group", "grp_c3"),
		groupMember("grp_a1", "user", "ext_okta7"), // sorts before grp_c3 by id alone
		groupMember("grp_c3", "user", "usr_a1"),
		groupMember("grp_b2", "group", "grp_c3"),
	} {
		do(t, s, store.Tx.PutGroupMember, m)
	}
	same(t, "GroupMembers sorted by (kind, id)", get(t, s, store.Tx.GroupMembers, "grp_a1"), []store.GroupMember{
		groupMember("grp_a1", "group", "grp_c3"),
		groupMember("grp_a1", "user", "ext_okta7"),
		groupMember("grp_a1", "user", "usr_a1"),
		groupMember("grp_a1", "user", "usr_b2"),
	})
	same(t, "GroupsOf a user", groupsOf(t, s, "user", "usr_a1"), []store.GroupMember{
		groupMember("grp_a1", "user", "usr_a1"),
		groupMember("grp_c3", "user", "usr_a1"),
	})
	same(t, "GroupsOf a group", groupsOf(t, s, "group", "grp_c3"), []store.GroupMember{
		groupMember("grp_a1", "group", "grp_c3"),
		groupMember("grp_b2", "group", "grp_c3"),
	})
	same(t, "GroupsOf the wrong kind", len(groupsOf(t, s, "group", "usr_a1")), 0)

	// Put again replaces the row
	again := groupMember("grp_a1", "user", "usr_a1")
	again.AddedAt = at(50)
	do(t, s, store.Tx.PutGroupMember, again)
	same(t, "GroupMembers after upsert", get(t, s, store.Tx.GroupMembers, "grp_a1"), []store.GroupMember{
		groupMember("grp_a1", "group", "grp_c3"),
		groupMember("grp_a1", "user", "ext_okta7"),
		again,
		groupMember("grp_a1", "user", "usr_b2"),
	})

	if err := deleteGroupMember(t, s, "grp_a1", "user", "usr_b2"); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, "GroupMembers after delete", keys(get(t, s, store.Tx.GroupMembers, "grp_a1"), func(m store.GroupMember) string { return m.ID }), []string{"grp_c3", "ext_okta7", "usr_a1"})
	wantErr(t, "DeleteGroupMember twice", deleteGroupMember(t, s, "grp_a1", "user", "usr_b2"), trellis.ErrNotFound)
	wantErr(t, "DeleteGroupMember with the wrong kind", deleteGroupMember(t, s, "grp_a1", "group", "usr_a1"), trellis.ErrNotFound)
}

func testGroupDelete(t *testing.T, s store.Store) {
	for _, g := range []string{"grp_p1", "grp_g2", "grp_o3"} {
		do(t, s, store.Tx.InsertGroup, groupRow(g, "org_a1"))
	}
	for _, m := range []store.GroupMember{
		groupMember("grp_g2", "user", "usr_a1"),
		groupMember("grp_g2", "group", "grp_o3"),
		groupMember("grp_p1", "group", "grp_g2"),
		groupMember("grp_p1", "user", "usr_a1"),
		groupMember("grp_o3", "user", "usr_b2"),
	} {
		do(t, s, store.Tx.PutGroupMember, m)
	}
	do(t, s, store.Tx.DeleteGroup, "grp_g2")

	_, err := call(t, s, store.Tx.GetGroup, "grp_g2")
	wantErr(t, "GetGroup deleted", err, trellis.ErrNotFound)
	same(t, "members of the deleted group", len(get(t, s, store.Tx.GroupMembers, "grp_g2")), 0)
	same(t, "groups holding the deleted group", len(groupsOf(t, s, "group", "grp_g2")), 0)
	same(t, "parent lost the deleted group only", get(t, s, store.Tx.GroupMembers, "grp_p1"), []store.GroupMember{groupMember("grp_p1", "user", "usr_a1")})
	same(t, "user's groups", groupsOf(t, s, "user", "usr_a1"), []store.GroupMember{groupMember("grp_p1", "user", "usr_a1")})
	same(t, "former nested member is in no group", len(groupsOf(t, s, "group", "grp_o3")), 0)
	same(t, "former nested member keeps its own members", get(t, s, store.Tx.GroupMembers, "grp_o3"), []store.GroupMember{groupMember("grp_o3", "user", "usr_b2")})
	same(t, "remaining groups", keys(get(t, s, store.Tx.ListGroups, "org_a1"), func(g store.Group) string { return g.ID }), []string{"grp_o3", "grp_p1"})
	wantErr(t, "DeleteGroup twice", exec(t, s, store.Tx.DeleteGroup, "grp_g2"), trellis.ErrNotFound)
}

// ---- roles

func getRoleByKey(t *testing.T, s store.Store, org, key string) (store.Role, error) {
	var r store.Role
	err := s.Read(t.Context(), func(tx store.Tx) error {
		var err error
		r, err = tx.GetRoleByKey(t.Context(), org, key)
		return err
	})
	return r, err
}

func testRoles(t *testing.T, s store.Store) {
	billing := roleRow("role_a1", "org_a1", "billing-admin")
	auditor := roleRow("role_b2", "org_a1", "auditor")
	auditor.Permissions = []string{"audit.read"}
	other := roleRow("role_c3", "org_b2", "billing-admin") // same key, another org
	for _, r := range []store.Role{billing, auditor, other} {
		do(t, s, store.Tx.InsertRole, r)
	}
	same(t, "GetRole", get(t, s, store.Tx.GetRole, "role_a1"), billing)
	r, err := getRoleByKey(t, s, "org_b2", "billing-admin")
	if err != nil {
		t.Fatal(err)
	}
	same(t, "GetRoleByKey", r, other)
	same(t, "ListRoles sorted by key", get(t, s, store.Tx.ListRoles, "org_a1"), []store.Role{auditor, billing})

	wantErr(t, "InsertRole duplicate id", exec(t, s, store.Tx.InsertRole, roleRow("role_a1", "org_a1", "new-key")), trellis.ErrConflict)
	wantErr(t, "InsertRole duplicate key", exec(t, s, store.Tx.InsertRole, roleRow("role_d4", "org_a1", "auditor")), trellis.ErrConflict)
	wantErr(t, "UpdateRole to a taken key", exec(t, s, store.Tx.UpdateRole, roleRow("role_b2", "org_a1", "billing-admin")), trellis.ErrConflict)
	same(t, "ListRoles after failed writes", get(t, s, store.Tx.ListRoles, "org_a1"), []store.Role{auditor, billing})

	_, err = call(t, s, store.Tx.GetRole, "role_zz")
	wantErr(t, "GetRole unknown", err, trellis.ErrNotFound)
	_, err = getRoleByKey(t, s, "org_b2", "auditor")
	wantErr(t, "GetRoleByKey in another org", err, trellis.ErrNotFound)
	wantErr(t, "UpdateRole unknown", exec(t, s, store.Tx.UpdateRole, roleRow("role_zz", "org_a1", "x")), trellis.ErrNotFound)
	wantErr(t, "DeleteRole unknown", exec(t, s, store.Tx.DeleteRole, "role_zz"), trellis.ErrNotFound)

	// renaming a key frees the old one
	renamed := billing
	renamed.Key, renamed.Name, renamed.Permissions, renamed.UpdatedAt = "billing-owner", "Billing owner", nil, at(40)
	do(t, s, store.Tx.UpdateRole, renamed)
	same(t, "GetRole after update", get(t, s, store.Tx.GetRole, "role_a1"), renamed)
	_, err = getRoleByKey(t, s, "org_a1", "billing-admin")
	wantErr(t, "GetRoleByKey old key", err, trellis.ErrNotFound)
	do(t, s, store.Tx.InsertRole, roleRow("role_d4", "org_a1", "billing-admin"))

	do(t, s, store.Tx.DeleteRole, "role_b2")
	_, err = call(t, s, store.Tx.GetRole, "role_b2")
	wantErr(t, "GetRole deleted", err, trellis.ErrNotFound)
	_, err = getRoleByKey(t, s, "org_a1", "auditor")
	wantErr(t, "GetRoleByKey deleted", err, trellis.ErrNotFound)
	wantKeys(t, "ListRoles at the end", keys(get(t, s, store.Tx.ListRoles, "org_a1"), func(r store.Role) string { return r.ID }), []string{"role_d4", "role_a1"})
}

// ---- invitations

func testInvitations(t *testing.T, s store.Store) {
	a := invitationRow("inv_a1", "org_a1", "token-a1")
	b := invitationRow("inv_b2", "org_a1", "token-b2")
	b.Roles = nil
	c := invitationRow("inv_c3", "org_b2", "token-c3")
	for _, inv := range []store.Invitation{b, c, a} {
		do(t, s, store.Tx.InsertInvitation, inv)
	}
	same(t, "GetInvitation", get(t, s, store.Tx.GetInvitation, "inv_a1"), a)
	same(t, "GetInvitationByTokenHash", get(t, s, store.Tx.GetInvitationByTokenHash, sha("token-b2")), b)
	same(t, "ListInvitations sorted by id", get(t, s, store.Tx.ListInvitations, "org_a1"), []store.Invitation{a, b})

	_, err := call(t, s, store.Tx.GetInvitation, "inv_zz")
	wantErr(t, "GetInvitation unknown", err, trellis.ErrNotFound)
	_, err = call(t, s, store.Tx.GetInvitationByTokenHash, sha("token-zz"))
	wantErr(t, "GetInvitationByTokenHash unknown", err, trellis.ErrNotFound)
	wantErr(t, "InsertInvitation duplicate id", exec(t, s, store.Tx.InsertInvitation, invitationRow("inv_a1", "org_b2", "token-new")), trellis.ErrConflict)
	wantErr(t, "UpdateInvitation unknown", exec(t, s, store.Tx.UpdateInvitation, invitationRow("inv_zz", "org_a1", "t")), trellis.ErrNotFound)

	accepted := a
	accepted.AcceptedAt, accepted.AcceptedBy = ptr(at(70)), "usr_b2"
	do(t, s, store.Tx.UpdateInvitation, accepted)
	same(t, "GetInvitation accepted", get(t, s, store.Tx.GetInvitation, "inv_a1"), accepted)
	revoked := b
	revoked.RevokedAt = ptr(at(71))
	do(t, s, store.Tx.UpdateInvitation, revoked)
	same(t, "ListInvitations after updates", get(t, s, store.Tx.ListInvitations, "org_a1"), []store.Invitation{accepted, revoked})
}

// ---- service accounts and keys

func testServiceAccounts(t *testing.T, s store.Store) {
	b := accountRow("sa_b2", "org_a1")
	a := accountRow("sa_a1", "org_a1")
	a.Description, a.Roles = "", nil
	for _, sa := range []store.ServiceAccount{b, a, accountRow("sa_c3", "org_b2")} {
		do(t, s, store.Tx.InsertServiceAccount, sa)
	}
	same(t, "GetServiceAccount", get(t, s, store.Tx.GetServiceAccount, "sa_b2"), b)
	same(t, "ListServiceAccounts sorted by id", get(t, s, store.Tx.ListServiceAccounts, "org_a1"), []store.ServiceAccount{a, b})

	_, err := call(t, s, store.Tx.GetServiceAccount, "sa_zz")
	wantErr(t, "GetServiceAccount unknown", err, trellis.ErrNotFound)
	wantErr(t, "InsertServiceAccount duplicate id", exec(t, s, store.Tx.InsertServiceAccount, accountRow("sa_a1", "org_b2")), trellis.ErrConflict)
	wantErr(t, "UpdateServiceAccount unknown", exec(t, s, store.Tx.UpdateServiceAccount, accountRow("sa_zz", "org_a1")), trellis.ErrNotFound)
	wantErr(t, "DeleteServiceAccount unknown", exec(t, s, store.Tx.DeleteServiceAccount, "sa_zz"), trellis.ErrNotFound)

	u := b
	u.Name, u.Roles, u.UpdatedAt = "Deployer", []string{"member", "role_deploy"}, at(12)
	do(t, s, store.Tx.UpdateServiceAccount, u)
	same(t, "GetServiceAccount after update", get(t, s, store.Tx.GetServiceAccount, "sa_b2"), u)
}

func testAPIKeys(t *testing.T, s store.Store) {
	do(t, s, store.Tx.InsertServiceAccount, accountRow("sa_a1", "org_a1"))
	do(t, s, store.Tx.InsertServiceAccount, accountRow("sa_b2", "org_a1"))
	k2 := keyRow("key_b2", "sa_a1", "org_a1")
	k1 := keyRow("key_a1", "sa_a1", "org_a1")
	k1.ExpiresAt, k1.Permissions = nil, nil
	k3 := keyRow("key_c3", "sa_b2", "org_a1")
	for _, k := range []store.APIKey{k2, k3, k1} {
		do(t, s, store.Tx.InsertAPIKey, k)
	}
	same(t, "GetAPIKey", get(t, s, store.Tx.GetAPIKey, "key_b2"), k2)
	same(t, "ListAPIKeys sorted by id", get(t, s, store.Tx.ListAPIKeys, "sa_a1"), []store.APIKey{k1, k2})
	same(t, "ListAPIKeys unknown account", len(get(t, s, store.Tx.ListAPIKeys, "sa_zz")), 0)

	_, err := call(t, s, store.Tx.GetAPIKey, "key_zz")
	wantErr(t, "GetAPIKey unknown", err, trellis.ErrNotFound)
	wantErr(t, "InsertAPIKey duplicate id", exec(t, s, store.Tx.InsertAPIKey, keyRow("key_a1", "sa_b2", "org_a1")), trellis.ErrConflict)
	wantErr(t, "UpdateAPIKey unknown", exec(t, s, store.Tx.UpdateAPIKey, keyRow("key_zz", "sa_a1", "org_a1")), trellis.ErrNotFound)

	used := k2
	used.LastUsedAt, used.RevokedAt, used.ExpiresAt = ptr(at(15)), ptr(at(16)), ptr(at(17))
	do(t, s, store.Tx.UpdateAPIKey, used)
	same(t, "GetAPIKey after update", get(t, s, store.Tx.GetAPIKey, "key_b2"), used)
}

func testServiceAccountDelete(t *testing.T, s store.Store) {
	do(t, s, store.Tx.InsertServiceAccount, accountRow("sa_a1", "org_a1"))
	do(t, s, store.Tx.InsertServiceAccount, accountRow("sa_b2", "org_a1"))
	for _, k := range []store.APIKey{keyRow("key_a1", "sa_a1", "org_a1"), keyRow("key_b2", "sa_a1", "org_a1"), keyRow("key_c3", "sa_b2", "org_a1")} {
		do(t, s, store.Tx.InsertAPIKey, k)
	}
	do(t, s, store.Tx.DeleteServiceAccount, "sa_a1")

	_, err := call(t, s, store.Tx.GetServiceAccount, "sa_a1")
	wantErr(t, "GetServiceAccount deleted", err, trellis.ErrNotFound)
	for _, id := range []string{"key_a1", "key_b2"} {
		_, err = call(t, s, store.Tx.GetAPIKey, id)
		wantErr(t, "GetAPIKey of a deleted account", err, trellis.ErrNotFound)
	}
	same(t, "ListAPIKeys of a deleted account", len(get(t, s, store.Tx.ListAPIKeys, "sa_a1")), 0)
	same(t, "other account's keys", get(t, s, store.Tx.ListAPIKeys, "sa_b2"), []store.APIKey{keyRow("key_c3", "sa_b2", "org_a1")})
	same(t, "remaining accounts", get(t, s, store.Tx.ListServiceAccounts, "org_a1"), []store.ServiceAccount{accountRow("sa_b2", "org_a1")})
	wantErr(t, "DeleteServiceAccount twice", exec(t, s, store.Tx.DeleteServiceAccount, "sa_a1"), trellis.ErrNotFound)
}

// ---- delegations and impersonations

func testDelegations(t *testing.T, s store.Store) {
	b := delegationRow("dlg_b2", "org_a1")
	// a pending delegation with no expiry and no scopes, at a time in another zone
	a := delegationRow("dlg_a1", "org_a1")
	a.Grantee, a.Scopes, a.Subtree, a.ExpiresAt = "organization:org_p9#admin", nil, false, nil
	a.Status, a.GrantedBy, a.Reason = store.DelegationPending, "provider:prv_1", ""
	a.CreatedAt = at(2).In(time.FixedZone("CET", 3600))
	// one with every field set
	c := delegationRow("dlg_c3", "org_a1", "dlg_b2")
	c.Grantee, c.Scopes = "group:grp_a1", []string{"audit"}
	c.ApprovedBy, c.ApprovedAt = "user:usr_c3", ptr(at(3))
	c.RevokedBy, c.RevokedAt = "user:usr_c3", ptr(at(4))
	c.Status = store.DelegationRevoked
	other := delegationRow("dlg_d4", "org_b2")
	for _, d := range []store.Delegation{c, other, b, a} {
		do(t, s, store.Tx.InsertDelegation, d)
	}
	for _, want := range []store.Delegation{a, b, c, other} {
		same(t, "GetDelegation "+want.ID, get(t, s, store.Tx.GetDelegation, want.ID), want)
	}
	same(t, "ListDelegations sorted by id", get(t, s, store.Tx.ListDelegations, "org_a1"), []store.Delegation{a, b, c})
	same(t, "ListDelegations of another org", get(t, s, store.Tx.ListDelegations, "org_b2"), []store.Delegation{other})
	same(t, "ListDelegations unknown org", len(get(t, s, store.Tx.ListDelegations, "org_zz")), 0)

	_, err := call(t, s, store.Tx.GetDelegation, "dlg_zz")
	wantErr(t, "GetDelegation unknown", err, trellis.ErrNotFound)
	wantErr(t, "InsertDelegation duplicate id", exec(t, s, store.Tx.InsertDelegation, delegationRow("dlg_a1", "org_b2")), trellis.ErrConflict)
	wantErr(t, "UpdateDelegation unknown", exec(t, s, store.Tx.UpdateDelegation, delegationRow("dlg_zz", "org_a1")), trellis.ErrNotFound)
	same(t, "GetDelegation after failed writes", get(t, s, store.Tx.GetDelegation, "dlg_a1"), a)
	same(t, "ListDelegations of another org after failed writes", get(t, s, store.Tx.ListDelegations, "org_b2"), []store.Delegation{other})

	// approving sets times that were nil
	approved := a
	approved.Status, approved.ApprovedBy, approved.ApprovedAt, approved.ExpiresAt = store.DelegationActive, "user:usr_c3", ptr(at(10)), ptr(at(20))
	approved.Scopes = []string{"members", "sso", "scim"}
	do(t, s, store.Tx.UpdateDelegation, approved)
	same(t, "GetDelegation approved", get(t, s, store.Tx.GetDelegation, "dlg_a1"), approved)
	// and an update clears times that were set
	cleared := c
	cleared.ApprovedBy, cleared.ApprovedAt, cleared.RevokedBy, cleared.RevokedAt, cleared.ExpiresAt = "", nil, "", nil, nil
	cleared.Status, cleared.Via, cleared.Subtree = store.DelegationPending, nil, false
	do(t, s, store.Tx.UpdateDelegation, cleared)
	same(t, "GetDelegation cleared", get(t, s, store.Tx.GetDelegation, "dlg_c3"), cleared)
	same(t, "ListDelegations after updates", get(t, s, store.Tx.ListDelegations, "org_a1"), []store.Delegation{approved, b, cleared})
}

func testDelegationsVia(t *testing.T, s store.Store) {
	// dlg_a1 on org_a1 was re-delegated, also on a descendant (org_c3), and
	// one of those again; id order differs from insertion order
	for _, d := range []store.Delegation{
		delegationRow("dlg_a1", "org_a1"),
		delegationRow("dlg_e5", "org_a1", "dlg_a1"),
		delegationRow("dlg_c3", "org_c3", "dlg_a1"),
		delegationRow("dlg_d4", "org_c3", "dlg_c3"),
		delegationRow("dlg_b2", "org_a1"),
		delegationRow("dlg_f6", "org_c3", "dlg_b2", "dlg_a1"), // drawn on two
	} {
		do(t, s, store.Tx.InsertDelegation, d)
	}
	wantKeys(t, "DelegationsVia dlg_a1", keys(get(t, s, store.Tx.DelegationsVia, "dlg_a1"), delegationID), []string{"dlg_c3", "dlg_e5", "dlg_f6"})
	wantKeys(t, "DelegationsVia dlg_b2", keys(get(t, s, store.Tx.DelegationsVia, "dlg_b2"), delegationID), []string{"dlg_f6"})
	same(t, "a delegation drawn on two", get(t, s, store.Tx.GetDelegation, "dlg_f6"), delegationRow("dlg_f6", "org_c3", "dlg_b2", "dlg_a1"))
	wantKeys(t, "DelegationsVia dlg_c3", keys(get(t, s, store.Tx.DelegationsVia, "dlg_c3"), delegationID), []string{"dlg_d4"})
	wantKeys(t, "DelegationsVia of a leaf", keys(get(t, s, store.Tx.DelegationsVia, "dlg_d4"), delegationID), nil)
	wantKeys(t, "DelegationsVia unknown", keys(get(t, s, store.Tx.DelegationsVia, "dlg_zz"), delegationID), nil)
	same(t, "DelegationsVia rows", get(t, s, store.Tx.DelegationsVia, "dlg_c3"), []store.Delegation{delegationRow("dlg_d4", "org_c3", "dlg_c3")})

	// moving a delegation to another grantor moves it between listings
	moved := delegationRow("dlg_e5", "org_a1", "dlg_c3")
	do(t, s, store.Tx.UpdateDelegation, moved)
	wantKeys(t, "DelegationsVia dlg_a1 after a move", keys(get(t, s, store.Tx.DelegationsVia, "dlg_a1"), delegationID), []string{"dlg_c3", "dlg_f6"})
	wantKeys(t, "DelegationsVia dlg_c3 after a move", keys(get(t, s, store.Tx.DelegationsVia, "dlg_c3"), delegationID), []string{"dlg_d4", "dlg_e5"})
}

func testImpersonations(t *testing.T, s store.Store) {
	b := impersonationRow("imp_b2", "org_a1")
	// a pending request with no scopes, at a time in another zone
	a := impersonationRow("imp_a1", "org_a1")
	a.Scopes, a.Reason, a.Duration = nil, "", time.Hour+1500*time.Millisecond
	a.CreatedAt = at(1).In(time.FixedZone("PST", -8*3600))
	// one that ran its course: every field set
	c := impersonationRow("imp_c3", "org_a1")
	c.Scopes, c.Duration, c.Status = []string{"*"}, 7*24*time.Hour, store.ImpersonationEnded
	c.ApprovedBy, c.ApprovedAt, c.StartedAt, c.ExpiresAt = "user:usr_c3", ptr(at(2)), ptr(at(3)), ptr(at(3+7*24*60))
	c.EndedBy, c.EndedAt = "user:usr_a1", ptr(at(50))
	other := impersonationRow("imp_d4", "org_b2")
	for _, im := range []store.Impersonation{c, other, b, a} {
		do(t, s, store.Tx.InsertImpersonation, im)
	}
	for _, want := range []store.Impersonation{a, b, c, other} {
		same(t, "GetImpersonation "+want.ID, get(t, s, store.Tx.GetImpersonation, want.ID), want)
	}
	same(t, "ListImpersonations sorted by id", get(t, s, store.Tx.ListImpersonations, "org_a1"), []store.Impersonation{a, b, c})
	same(t, "ListImpersonations of another org", get(t, s, store.Tx.ListImpersonations, "org_b2"), []store.Impersonation{other})
	same(t, "ListImpersonations unknown org", len(get(t, s, store.Tx.ListImpersonations, "org_zz")), 0)

	_, err := call(t, s, store.Tx.GetImpersonation, "imp_zz")
	wantErr(t, "GetImpersonation unknown", err, trellis.ErrNotFound)
	wantErr(t, "InsertImpersonation duplicate id", exec(t, s, store.Tx.InsertImpersonation, impersonationRow("imp_a1", "org_b2")), trellis.ErrConflict)
	wantErr(t, "UpdateImpersonation unknown", exec(t, s, store.Tx.UpdateImpersonation, impersonationRow("imp_zz", "org_a1")), trellis.ErrNotFound)
	same(t, "GetImpersonation after failed writes", get(t, s, store.Tx.GetImpersonation, "imp_a1"), a)
	same(t, "ListImpersonations of another org after failed writes", get(t, s, store.Tx.ListImpersonations, "org_b2"), []store.Impersonation{other})

	// approving and starting sets times that were nil
	started := b
	started.Status, started.ApprovedBy, started.ApprovedAt = store.ImpersonationActive, "user:usr_c3", ptr(at(10))
	started.StartedAt, started.ExpiresAt = ptr(at(11)), ptr(at(11+30))
	do(t, s, store.Tx.UpdateImpersonation, started)
	same(t, "GetImpersonation started", get(t, s, store.Tx.GetImpersonation, "imp_b2"), started)
	// and an update clears times that were set, and changes the duration
	cleared := c
	cleared.ApprovedBy, cleared.ApprovedAt, cleared.StartedAt, cleared.ExpiresAt = "", nil, nil, nil
	cleared.EndedBy, cleared.EndedAt, cleared.Status, cleared.Duration = "", nil, store.ImpersonationPending, 0
	do(t, s, store.Tx.UpdateImpersonation, cleared)
	same(t, "GetImpersonation cleared", get(t, s, store.Tx.GetImpersonation, "imp_c3"), cleared)
	same(t, "ListImpersonations after updates", get(t, s, store.Tx.ListImpersonations, "org_a1"), []store.Impersonation{a, started, cleared})
}

// ---- audit

// auditFixture appends, in this global order: A1 P1 A2 B1 A3 P2, where A is
// org_a1, B org_b2 and P the platform chain (""). Minutes are 1..6 in order.
func auditFixture(t *testing.T, s store.Store) (a1, p1, a2, b1, a3, p2 audit.Event) {
	a1 = event("org_a1", 1, 1, "usr_a1", "organization.create")
	p1 = event("", 1, 2, "usr_a1", "user.create")
	a2 = event("org_a1", 2, 3, "usr_b2", "member.put")
	b1 = event("org_b2", 1, 4, "usr_b2", "organization.create")
	a3 = event("org_a1", 3, 5, "usr_a1", "member.put")
	p2 = event("", 2, 6, "sa_c3", "user.create")
	p2.Details = nil
	do(t, s, store.Tx.AppendAudit, a1)
	mustTx(t, s, func(tx store.Tx) error { // several events in one transaction
		for _, ev := range []audit.Event{p1, a2, b1} {
			if err := tx.AppendAudit(t.Context(), ev); err != nil {
				return err
			}
		}
		return nil
	})
	do(t, s, store.Tx.AppendAudit, a3)
	do(t, s, store.Tx.AppendAudit, p2)
	return
}

func testAuditHeads(t *testing.T, s store.Store) {
	same(t, "head of an empty chain", get(t, s, store.Tx.AuditHead, "org_a1"), audit.Head{})
	same(t, "head of the empty platform chain", get(t, s, store.Tx.AuditHead, ""), audit.Head{})

	auditFixture(t, s)
	same(t, "head org_a1", get(t, s, store.Tx.AuditHead, "org_a1"), audit.Head{Seq: 3, Hash: "hash-org_a1-3"})
	same(t, "head org_b2", get(t, s, store.Tx.AuditHead, "org_b2"), audit.Head{Seq: 1, Hash: "hash-org_b2-1"})
	same(t, "head platform", get(t, s, store.Tx.AuditHead, ""), audit.Head{Seq: 2, Hash: "hash--2"})
	same(t, "head unknown org", get(t, s, store.Tx.AuditHead, "org_zz"), audit.Head{})

	for _, ev := range []audit.Event{
		event("org_a1", 3, 9, "usr_a1", "replayed"),   // seq already used
		event("org_a1", 5, 9, "usr_a1", "skipped"),    // a gap
		event("org_a1", 1, 9, "usr_a1", "rewound"),    // far behind
		event("org_zz", 0, 9, "usr_a1", "zero"),       // chains start at 1
		event("org_zz", 2, 9, "usr_a1", "late start"), // ... not at 2
	} {
		wantErr(t, fmt.Sprintf("AppendAudit %s seq %d", ev.Organization, ev.Seq), exec(t, s, store.Tx.AppendAudit, ev), trellis.ErrConflict)
	}
	same(t, "head org_a1 after rejected appends", get(t, s, store.Tx.AuditHead, "org_a1"), audit.Head{Seq: 3, Hash: "hash-org_a1-3"})
	same(t, "head org_zz after rejected appends", get(t, s, store.Tx.AuditHead, "org_zz"), audit.Head{})
	same(t, "chain org_a1 after rejected appends", len(get(t, s, store.Tx.AuditChain, "org_a1")), 3)
	evs, _ := get2(t, s, store.AuditFilter{AllOrgs: true})
	same(t, "log after rejected appends", len(evs), 6)

	// the next seq is accepted
	do(t, s, store.Tx.AppendAudit, event("org_a1", 4, 9, "usr_a1", "next"))
	same(t, "head org_a1 moved", get(t, s, store.Tx.AuditHead, "org_a1"), audit.Head{Seq: 4, Hash: "hash-org_a1-4"})
}

// get2 runs ListAudit.
func get2(t *testing.T, s store.Store, f store.AuditFilter) ([]audit.Event, int64) {
	t.Helper()
	var (
		evs  []audit.Event
		next int64
	)
	mustRead(t, s, func(tx store.Tx) error {
		var err error
		evs, next, err = tx.ListAudit(t.Context(), f)
		return err
	})
	return evs, next
}

func testAuditList(t *testing.T, s store.Store) {
	a1, p1, a2, b1, a3, p2 := auditFixture(t, s)
	cases := []struct {
		name string
		f    store.AuditFilter
		want []audit.Event
	}{
		{"one org", store.AuditFilter{Org: "org_a1"}, []audit.Event{a1, a2, a3}},
		{"platform chain", store.AuditFilter{}, []audit.Event{p1, p2}},
		{"all orgs, in append order", store.AuditFilter{AllOrgs: true}, []audit.Event{a1, p1, a2, b1, a3, p2}},
		{"since is inclusive, until exclusive", store.AuditFilter{AllOrgs: true, Since: ptr(at(3)), Until: ptr(at(5))}, []audit.Event{a2, b1}},
		{"since only", store.AuditFilter{Org: "org_a1", Since: ptr(at(4))}, []audit.Event{a3}},
		{"until only", store.AuditFilter{AllOrgs: true, Until: ptr(at(2))}, []audit.Event{a1}},
		{"actor", store.AuditFilter{AllOrgs: true, Actor: "usr_b2"}, []audit.Event{a2, b1}},
		{"action", store.AuditFilter{AllOrgs: true, Action: "user.create"}, []audit.Event{p1, p2}},
		{"org and action", store.AuditFilter{Org: "org_a1", Action: "member.put"}, []audit.Event{a2, a3}},
		{"unknown org", store.AuditFilter{Org: "org_zz"}, nil},
		{"action prefix is no match", store.AuditFilter{AllOrgs: true, Action: "user"}, nil},
	}
	for _, c := range cases {
		evs, next := get2(t, s, c.f)
		same(t, "ListAudit "+c.name, evs, c.want)
		if (next == 0) != (len(c.want) == 0) {
			t.Errorf("ListAudit %s: next = %d with %d events", c.name, next, len(evs))
		}
	}

	// pages of everything, by cursor
	var walked []string
	var cursors []int64
	f := store.AuditFilter{AllOrgs: true, Limit: 4}
	for range 5 {
		evs, next := get2(t, s, f)
		if len(evs) == 0 {
			if next != 0 {
				t.Errorf("ListAudit empty page: next = %d, want 0", next)
			}
			break
		}
		walked = append(walked, keys(evs, eventHash)...)
		cursors = append(cursors, next)
		f.Cursor = next
	}
	wantKeys(t, "ListAudit pages", walked, keys([]audit.Event{a1, p1, a2, b1, a3, p2}, eventHash))
	if len(cursors) != 2 || cursors[0] <= 0 || cursors[1] <= cursors[0] {
		t.Errorf("ListAudit cursors %v: want two, positive and increasing", cursors)
	}

	// pages of a filter: the cursor skips the other orgs' events
	evs, next := get2(t, s, store.AuditFilter{Org: "org_a1", Limit: 2})
	same(t, "ListAudit org page 1", evs, []audit.Event{a1, a2})
	evs, next = get2(t, s, store.AuditFilter{Org: "org_a1", Limit: 2, Cursor: next})
	same(t, "ListAudit org page 2", evs, []audit.Event{a3})
	evs, next = get2(t, s, store.AuditFilter{Org: "org_a1", Limit: 2, Cursor: next})
	same(t, "ListAudit org page 3", len(evs), 0)
	same(t, "ListAudit org page 3 next", next, int64(0))

	// a cursor taken before later appends sees exactly the new events
	_, last := get2(t, s, store.AuditFilter{AllOrgs: true})
	a4 := event("org_a1", 4, 7, "usr_a1", "organization.update")
	do(t, s, store.Tx.AppendAudit, a4)
	evs, _ = get2(t, s, store.AuditFilter{AllOrgs: true, Cursor: last})
	same(t, "ListAudit after the last cursor", evs, []audit.Event{a4})
}

func testAuditChain(t *testing.T, s store.Store) {
	a1, p1, a2, b1, a3, p2 := auditFixture(t, s)
	same(t, "AuditChain org_a1", get(t, s, store.Tx.AuditChain, "org_a1"), []audit.Event{a1, a2, a3})
	same(t, "AuditChain org_b2", get(t, s, store.Tx.AuditChain, "org_b2"), []audit.Event{b1})
	same(t, "AuditChain platform", get(t, s, store.Tx.AuditChain, ""), []audit.Event{p1, p2})
	same(t, "AuditChain unknown org", len(get(t, s, store.Tx.AuditChain, "org_zz")), 0)
}

// ---- outbox

func appendOutbox(t *testing.T, s store.Store, e store.OutboxEntry) int64 {
	t.Helper()
	var seq int64
	mustTx(t, s, func(tx store.Tx) error {
		var err error
		seq, err = tx.AppendOutbox(t.Context(), e)
		return err
	})
	return seq
}

func markApplied(t *testing.T, s store.Store, seq int64, rev string) error {
	return s.InTx(t.Context(), func(tx store.Tx) error { return tx.MarkApplied(t.Context(), seq, rev, at(100)) })
}

func testOutbox(t *testing.T, s store.Store) {
	same(t, "PendingOutbox empty", len(get(t, s, store.Tx.PendingOutbox, 0)), 0)

	e1 := outboxEntry("organization.create")
	e2 := store.OutboxEntry{Action: "member.delete", DeleteFilters: outboxEntry("").DeleteFilters, CreatedAt: at(8)}
	e3 := store.OutboxEntry{Action: "group.create", Updates: outboxEntry("").Updates[1:], CreatedAt: at(9)}
	e3.Seq = 77 // ignored: the store assigns Seq
	e1.Seq = appendOutbox(t, s, e1)
	e2.Seq = appendOutbox(t, s, e2)
	e3.Seq = appendOutbox(t, s, e3)
	if e1.Seq <= 0 || e2.Seq <= e1.Seq || e3.Seq <= e2.Seq {
		t.Fatalf("AppendOutbox seqs %d, %d, %d: want positive and increasing", e1.Seq, e2.Seq, e3.Seq)
	}
	same(t, "PendingOutbox all", get(t, s, store.Tx.PendingOutbox, 0), []store.OutboxEntry{e1, e2, e3})
	same(t, "PendingOutbox negative limit", len(get(t, s, store.Tx.PendingOutbox, -1)), 3)
	wantKeys(t, "PendingOutbox limit 2", keys(get(t, s, store.Tx.PendingOutbox, 2), outboxAction), []string{e1.Action, e2.Action})

	if err := markApplied(t, s, e2.Seq, "rev-2"); err != nil {
		t.Fatal(err)
	}
	same(t, "OutboxApplied marked", get(t, s, store.Tx.OutboxApplied, e2.Seq), true)
	same(t, "OutboxApplied unmarked", get(t, s, store.Tx.OutboxApplied, e1.Seq), false)
	same(t, "PendingOutbox skips applied", get(t, s, store.Tx.PendingOutbox, 0), []store.OutboxEntry{e1, e3})
	wantKeys(t, "PendingOutbox limit counts pending only", keys(get(t, s, store.Tx.PendingOutbox, 2), outboxAction), []string{e1.Action, e3.Action})
	if err := markApplied(t, s, e2.Seq, "rev-2b"); err != nil {
		t.Errorf("MarkApplied twice: %v", err)
	}

	wantErr(t, "MarkApplied unknown", markApplied(t, s, e3.Seq+1000, "rev-x"), trellis.ErrNotFound)
	_, err := call(t, s, store.Tx.OutboxApplied, e3.Seq+1000)
	wantErr(t, "OutboxApplied unknown", err, trellis.ErrNotFound)

	for _, seq := range []int64{e3.Seq, e1.Seq} { // order of marking does not matter
		if err := markApplied(t, s, seq, fmt.Sprintf("rev-%d", seq)); err != nil {
			t.Fatal(err)
		}
	}
	same(t, "PendingOutbox when all applied", len(get(t, s, store.Tx.PendingOutbox, 0)), 0)

	e4 := store.OutboxEntry{Action: "role.create", CreatedAt: at(11)}
	e4.Seq = appendOutbox(t, s, e4)
	if e4.Seq <= e3.Seq {
		t.Errorf("AppendOutbox after applied entries: seq %d, want > %d", e4.Seq, e3.Seq)
	}
	same(t, "PendingOutbox new entry", get(t, s, store.Tx.PendingOutbox, 0), []store.OutboxEntry{e4})
}

// ---- transactions

func testTxErrorPassesThrough(t *testing.T, s store.Store) {
	wrapped := fmt.Errorf("creating org: %w", errBoom)
	wantErr(t, "InTx", s.InTx(t.Context(), func(store.Tx) error { return wrapped }), errBoom)
	wantErr(t, "Read", s.Read(t.Context(), func(store.Tx) error { return wrapped }), errBoom)
	// the store's own errors come through unchanged too
	err := s.InTx(t.Context(), func(tx store.Tx) error { return tx.DeleteOrg(t.Context(), "org_zz") })
	wantErr(t, "InTx store error", err, trellis.ErrNotFound)
}

// seed stores one row of every kind; writes below change each of them.
func seed(t *testing.T, s store.Store) {
	t.Helper()
	mustTx(t, s, func(tx store.Tx) error {
		ctx := t.Context()
		return errors.Join(
			tx.InsertOrg(ctx, acmeOrg()),
			tx.InsertOrg(ctx, orgRow("org_c3", "gamma", "Gamma", "org_a1")),
			tx.InsertUser(ctx, userRow("usr_a1", "ada@example.com")),
			tx.InsertUser(ctx, userRow("usr_b2", "bob@example.com")),
			tx.PutMembership(ctx, memberRow("org_a1", "usr_a1", "admin")),
			tx.InsertGroup(ctx, groupRow("grp_a1", "org_a1")),
			tx.PutGroupMember(ctx, groupMember("grp_a1", "user", "usr_a1")),
			tx.InsertRole(ctx, roleRow("role_a1", "org_a1", "billing-admin")),
			tx.InsertInvitation(ctx, invitationRow("inv_a1", "org_a1", "token-a1")),
			tx.InsertServiceAccount(ctx, accountRow("sa_a1", "org_a1")),
			tx.InsertAPIKey(ctx, keyRow("key_a1", "sa_a1", "org_a1")),
			tx.InsertDelegation(ctx, delegationRow("dlg_a1", "org_a1")),
			tx.InsertImpersonation(ctx, impersonationRow("imp_a1", "org_a1")),
			tx.AppendAudit(ctx, event("org_a1", 1, 1, "usr_a1", "organization.create")),
		)
	})
	appendOutbox(t, s, outboxEntry("organization.create"))
}

// writes are one call of every write method, each valid on the seeded store
// and, in this order, on the store left by the ones before it.
func writes(outboxSeq int64) []struct {
	name string
	fn   func(ctx context.Context, tx store.Tx) error
} {
	renamed := acmeOrg()
	renamed.Slug, renamed.Name = "acme-renamed", "Acme Renamed"
	renamed.Policy = store.OrgPolicy{DelegationApproval: true, DelegationRequired: true, ImpersonationApproval: true}
	beta := orgRow("org_b2", "beta", "Beta", "")
	beta.Domains = []store.Domain{verified("beta.example")}
	ada := userRow("usr_a1", "ada.lovelace@example.com")
	group := groupRow("grp_a1", "org_a1")
	group.Name = "Renamed group"
	role := roleRow("role_a1", "org_a1", "billing-owner")
	inv := invitationRow("inv_a1", "org_a1", "token-a1")
	inv.RevokedAt = ptr(at(30))
	sa := accountRow("sa_a1", "org_a1")
	sa.Name = "Renamed robot"
	key := keyRow("key_a1", "sa_a1", "org_a1")
	key.LastUsedAt = ptr(at(31))
	dlg := delegationRow("dlg_a1", "org_a1")
	dlg.Status, dlg.RevokedBy, dlg.RevokedAt = store.DelegationRevoked, "user:usr_a1", ptr(at(33))
	imp := impersonationRow("imp_a1", "org_a1")
	imp.Status, imp.StartedAt, imp.ExpiresAt = store.ImpersonationActive, ptr(at(34)), ptr(at(64))
	type w = struct {
		name string
		fn   func(ctx context.Context, tx store.Tx) error
	}
	return []w{
		{"InsertOrg", func(ctx context.Context, tx store.Tx) error { return tx.InsertOrg(ctx, beta) }},
		{"UpdateOrg", func(ctx context.Context, tx store.Tx) error { return tx.UpdateOrg(ctx, renamed) }},
		{"DeleteOrg", func(ctx context.Context, tx store.Tx) error { return tx.DeleteOrg(ctx, "org_c3") }},
		{"InsertUser", func(ctx context.Context, tx store.Tx) error {
			return tx.InsertUser(ctx, userRow("usr_c3", "cy@example.com"))
		}},
		{"UpdateUser", func(ctx context.Context, tx store.Tx) error { return tx.UpdateUser(ctx, ada) }},
		{"PutMembership", func(ctx context.Context, tx store.Tx) error {
			return tx.PutMembership(ctx, memberRow("org_a1", "usr_b2", "member"))
		}},
		{"DeleteMembership", func(ctx context.Context, tx store.Tx) error { return tx.DeleteMembership(ctx, "org_a1", "usr_a1") }},
		{"InsertGroup", func(ctx context.Context, tx store.Tx) error { return tx.InsertGroup(ctx, groupRow("grp_b2", "org_a1")) }},
		{"UpdateGroup", func(ctx context.Context, tx store.Tx) error { return tx.UpdateGroup(ctx, group) }},
		{"PutGroupMember", func(ctx context.Context, tx store.Tx) error {
			return tx.PutGroupMember(ctx, groupMember("grp_a1", "user", "usr_b2"))
		}},
		{"DeleteGroupMember", func(ctx context.Context, tx store.Tx) error {
			return tx.DeleteGroupMember(ctx, "grp_a1", "user", "usr_a1")
		}},
		{"DeleteGroup", func(ctx context.Context, tx store.Tx) error { return tx.DeleteGroup(ctx, "grp_a1") }},
		{"InsertRole", func(ctx context.Context, tx store.Tx) error {
			return tx.InsertRole(ctx, roleRow("role_b2", "org_a1", "auditor"))
		}},
		{"UpdateRole", func(ctx context.Context, tx store.Tx) error { return tx.UpdateRole(ctx, role) }},
		{"DeleteRole", func(ctx context.Context, tx store.Tx) error { return tx.DeleteRole(ctx, "role_a1") }},
		{"InsertInvitation", func(ctx context.Context, tx store.Tx) error {
			return tx.InsertInvitation(ctx, invitationRow("inv_b2", "org_a1", "token-b2"))
		}},
		{"UpdateInvitation", func(ctx context.Context, tx store.Tx) error { return tx.UpdateInvitation(ctx, inv) }},
		{"InsertServiceAccount", func(ctx context.Context, tx store.Tx) error {
			return tx.InsertServiceAccount(ctx, accountRow("sa_b2", "org_a1"))
		}},
		{"UpdateServiceAccount", func(ctx context.Context, tx store.Tx) error { return tx.UpdateServiceAccount(ctx, sa) }},
		{"InsertAPIKey", func(ctx context.Context, tx store.Tx) error {
			return tx.InsertAPIKey(ctx, keyRow("key_b2", "sa_a1", "org_a1"))
		}},
		{"UpdateAPIKey", func(ctx context.Context, tx store.Tx) error { return tx.UpdateAPIKey(ctx, key) }},
		{"DeleteServiceAccount", func(ctx context.Context, tx store.Tx) error { return tx.DeleteServiceAccount(ctx, "sa_a1") }},
		{"InsertDelegation", func(ctx context.Context, tx store.Tx) error {
			return tx.InsertDelegation(ctx, delegationRow("dlg_b2", "org_a1", "dlg_a1"))
		}},
		{"UpdateDelegation", func(ctx context.Context, tx store.Tx) error { return tx.UpdateDelegation(ctx, dlg) }},
		{"InsertImpersonation", func(ctx context.Context, tx store.Tx) error {
			return tx.InsertImpersonation(ctx, impersonationRow("imp_b2", "org_a1"))
		}},
		{"UpdateImpersonation", func(ctx context.Context, tx store.Tx) error { return tx.UpdateImpersonation(ctx, imp) }},
		{"AppendAudit", func(ctx context.Context, tx store.Tx) error {
			return tx.AppendAudit(ctx, event("org_a1", 2, 2, "usr_a1", "organization.update"))
		}},
		{"AppendOutbox", func(ctx context.Context, tx store.Tx) error {
			_, err := tx.AppendOutbox(ctx, outboxEntry("organization.update"))
			return err
		}},
		{"MarkApplied", func(ctx context.Context, tx store.Tx) error { return tx.MarkApplied(ctx, outboxSeq, "rev-1", at(32)) }},
	}
}

// snapshot reads everything the seed and the writes touch, by every lookup
// that could see it, so a write that leaks or a rollback that misses shows.
func snapshot(t *testing.T, s store.Store, outboxSeq int64) map[string]any {
	t.Helper()
	ctx := t.Context()
	out := map[string]any{}
	note := func(name string, v any, err error) {
		switch {
		case errors.Is(err, trellis.ErrNotFound):
			out[name] = "not found"
		case err != nil:
			t.Errorf("snapshot %s: %v", name, err)
		default:
			out[name] = v
		}
	}
	mustRead(t, s, func(tx store.Tx) error {
		v0, err := tx.ListOrgs(ctx, store.OrgFilter{})
		note("orgs", v0, err)
		for _, slug := range []string{"acme", "acme-renamed", "beta", "gamma"} {
			v, err := tx.GetOrgBySlug(ctx, slug)
			note("org slug "+slug, v, err)
		}
		for _, d := range []string{"acme.example", "beta.example"} {
			v, err := tx.OrgByVerifiedDomain(ctx, d)
			note("org domain "+d, v, err)
		}
		v1, err := tx.Children(ctx, "org_a1")
		note("children", v1, err)
		for _, id := range []string{"usr_a1", "usr_b2", "usr_c3"} {
			v, err := tx.GetUser(ctx, id)
			note("user "+id, v, err)
		}
		for _, e := range []string{"ada@example.com", "ada.lovelace@example.com", "cy@example.com"} {
			v, err := tx.GetUserByEmail(ctx, e)
			note("user email "+e, v, err)
		}
		v2, err := tx.ListMembers(ctx, "org_a1", store.Page{})
		note("members", v2, err)
		for _, u := range []string{"usr_a1", "usr_b2"} {
			v, err := tx.UserMemberships(ctx, u)
			note("memberships "+u, v, err)
		}
		v3, err := tx.ListGroups(ctx, "org_a1")
		note("groups", v3, err)
		for _, g := range []string{"grp_a1", "grp_b2"} {
			v, err := tx.GetGroup(ctx, g)
			note("group "+g, v, err)
			vm, err := tx.GroupMembers(ctx, g)
			note("group members "+g, vm, err)
		}
		for _, u := range []string{"usr_a1", "usr_b2"} {
			v, err := tx.GroupsOf(ctx, "user", u)
			note("groups of "+u, v, err)
		}
		v4, err := tx.ListRoles(ctx, "org_a1")
		note("roles", v4, err)
		for _, k := range []string{"billing-admin", "billing-owner", "auditor"} {
			v, err := tx.GetRoleByKey(ctx, "org_a1", k)
			note("role key "+k, v, err)
		}
		v5, err := tx.ListInvitations(ctx, "org_a1")
		note("invitations", v5, err)
		v6, err := tx.GetInvitationByTokenHash(ctx, sha("token-b2"))
		note("invitation by hash", v6, err)
		v7, err := tx.ListServiceAccounts(ctx, "org_a1")
		note("service accounts", v7, err)
		for _, sa := range []string{"sa_a1", "sa_b2"} {
			v, err := tx.ListAPIKeys(ctx, sa)
			note("keys "+sa, v, err)
		}
		for _, k := range []string{"key_a1", "key_b2"} {
			v, err := tx.GetAPIKey(ctx, k)
			note("key "+k, v, err)
		}
		v12, err := tx.ListDelegations(ctx, "org_a1")
		note("delegations", v12, err)
		v13, err := tx.DelegationsVia(ctx, "dlg_a1")
		note("delegations via dlg_a1", v13, err)
		for _, id := range []string{"dlg_a1", "dlg_b2"} {
			v, err := tx.GetDelegation(ctx, id)
			note("delegation "+id, v, err)
		}
		v14, err := tx.ListImpersonations(ctx, "org_a1")
		note("impersonations", v14, err)
		for _, id := range []string{"imp_a1", "imp_b2"} {
			v, err := tx.GetImpersonation(ctx, id)
			note("impersonation "+id, v, err)
		}
		v8, err := tx.AuditHead(ctx, "org_a1")
		note("audit head", v8, err)
		v9, err := tx.AuditChain(ctx, "org_a1")
		note("audit chain", v9, err)
		evs, next, err := tx.ListAudit(ctx, store.AuditFilter{AllOrgs: true})
		note("audit log", evs, err)
		note("audit next", next, err)
		v10, err := tx.PendingOutbox(ctx, 0)
		note("pending outbox", v10, err)
		v11, err := tx.OutboxApplied(ctx, outboxSeq)
		note("outbox applied", v11, err)
		return nil
	})
	return norm(out)
}

// seededOutboxSeq is the seq of the one outbox entry seed appends.
func seededOutboxSeq(t *testing.T, s store.Store) int64 {
	t.Helper()
	p := get(t, s, store.Tx.PendingOutbox, 0)
	if len(p) != 1 {
		t.Fatalf("seeded outbox has %d pending entries, want 1", len(p))
	}
	return p[0].Seq
}

func diffKeys(a, b map[string]any) []string {
	var out []string
	for k, v := range a {
		if !reflect.DeepEqual(v, b[k]) {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func testTxRollback(t *testing.T, s store.Store) {
	seed(t, s)
	seq := seededOutboxSeq(t, s)
	before := snapshot(t, s, seq)

	err := s.InTx(t.Context(), func(tx store.Tx) error {
		for _, w := range writes(seq) {
			if err := w.fn(t.Context(), tx); err != nil {
				t.Errorf("%s inside the transaction: %v", w.name, err)
				return err
			}
		}
		return errBoom
	})
	wantErr(t, "InTx", err, errBoom)
	if d := diffKeys(before, snapshot(t, s, seq)); len(d) > 0 {
		t.Errorf("a failed transaction left changes in: %q", d)
	}

	// the rolled-back keys (slugs, emails, domains, seqs) are free: the same
	// writes succeed afterwards
	mustTx(t, s, func(tx store.Tx) error {
		for _, w := range writes(seq) {
			if err := w.fn(t.Context(), tx); err != nil {
				return fmt.Errorf("%s after rollback: %w", w.name, err)
			}
		}
		return nil
	})
}

func testTxCommitEach(t *testing.T, s store.Store) {
	// every write commits and is visible; this also proves the snapshot sees
	// each of them, so the rollback and read-only tests are not blind
	seed(t, s)
	seq := seededOutboxSeq(t, s)
	prev := snapshot(t, s, seq)
	for _, w := range writes(seq) {
		if err := s.InTx(t.Context(), func(tx store.Tx) error { return w.fn(t.Context(), tx) }); err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		next := snapshot(t, s, seq)
		if len(diffKeys(prev, next)) == 0 {
			t.Errorf("%s committed but changed nothing visible", w.name)
		}
		prev = next
	}
}

func testTxReadOwnWrites(t *testing.T, s store.Store) {
	seed(t, s)
	mustTx(t, s, func(tx store.Tx) error {
		ctx := t.Context()
		beta := orgRow("org_b2", "beta", "Beta", "org_a1")
		if err := tx.InsertOrg(ctx, beta); err != nil {
			return err
		}
		if got, err := tx.GetOrgBySlug(ctx, "beta"); err != nil || got.ID != "org_b2" {
			t.Errorf("GetOrgBySlug of an org inserted in the same tx: %v, %v", got.ID, err)
		}
		if kids, err := tx.Children(ctx, "org_a1"); err != nil || len(kids) != 2 {
			t.Errorf("Children in the same tx: %d, %v; want 2", len(kids), err)
		}
		if err := tx.DeleteRole(ctx, "role_a1"); err != nil {
			return err
		}
		if _, err := tx.GetRoleByKey(ctx, "org_a1", "billing-admin"); !errors.Is(err, trellis.ErrNotFound) {
			t.Errorf("GetRoleByKey of a role deleted in the same tx: %v", err)
		}
		if err := tx.InsertDelegation(ctx, delegationRow("dlg_b2", "org_c3", "dlg_a1")); err != nil {
			return err
		}
		if via, err := tx.DelegationsVia(ctx, "dlg_a1"); err != nil || len(via) != 1 || via[0].ID != "dlg_b2" {
			t.Errorf("DelegationsVia of a delegation inserted in the same tx: %d, %v; want dlg_b2", len(via), err)
		}
		if err := tx.AppendAudit(ctx, event("org_a1", 2, 2, "usr_a1", "organization.update")); err != nil {
			return err
		}
		if h, err := tx.AuditHead(ctx, "org_a1"); err != nil || h.Seq != 2 {
			t.Errorf("AuditHead after an append in the same tx: %+v, %v", h, err)
		}
		// the head moved, so the same seq is now a conflict
		if err := tx.AppendAudit(ctx, event("org_a1", 2, 2, "usr_a1", "again")); !errors.Is(err, trellis.ErrConflict) {
			t.Errorf("AppendAudit of a seq appended in the same tx: %v", err)
		}
		return nil
	})
}

func testReadOnly(t *testing.T, s store.Store) {
	seed(t, s)
	seq := seededOutboxSeq(t, s)
	before := snapshot(t, s, seq)
	for _, w := range writes(seq) {
		called := false
		err := s.Read(t.Context(), func(tx store.Tx) error {
			called = true
			return w.fn(t.Context(), tx)
		})
		if !called {
			t.Errorf("Read did not run fn for %s", w.name)
		}
		if err == nil {
			t.Errorf("%s inside Read succeeded", w.name)
		}
	}
	if d := diffKeys(before, snapshot(t, s, seq)); len(d) > 0 {
		t.Errorf("writes inside Read changed: %q", d)
	}
}

func testCancelledContext(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	called := false
	fn := func(tx store.Tx) error {
		called = true
		return tx.InsertOrg(ctx, acmeOrg())
	}
	wantErr(t, "InTx with a cancelled context", s.InTx(ctx, fn), context.Canceled)
	wantErr(t, "Read with a cancelled context", s.Read(ctx, fn), context.Canceled)
	if called {
		t.Error("fn ran under a cancelled context")
	}
	_, err := call(t, s, store.Tx.GetOrg, "org_a1")
	wantErr(t, "org written under a cancelled context", err, trellis.ErrNotFound)
}

func testCopies(t *testing.T, s store.Store) {
	// what the caller passed in and what it got back are its own: editing
	// either changes nothing stored
	o := acmeOrg()
	do(t, s, store.Tx.InsertOrg, o)
	o.Domains[1].Domain = "evil.example"
	*o.Domains[1].VerifiedAt = at(999)
	o.Branding["logo"] = "evil"
	o.FeatureFlags["sso"] = false
	got := get(t, s, store.Tx.GetOrg, "org_a1")
	same(t, "org after editing the inserted value", got, acmeOrg())
	got.Domains[0].Token = "edited"
	got.Branding["color"] = "edited"
	*got.Domains[1].VerifiedAt = at(998)
	same(t, "org after editing a fetched value", get(t, s, store.Tx.GetOrg, "org_a1"), acmeOrg())
	listed := get(t, s, store.Tx.ListOrgs, store.OrgFilter{})
	listed[0].FeatureFlags["scim"] = true
	same(t, "org after editing a listed value", get(t, s, store.Tx.GetOrg, "org_a1"), acmeOrg())

	inv := invitationRow("inv_a1", "org_a1", "token-a1")
	do(t, s, store.Tx.InsertInvitation, inv)
	inv.TokenHash[0] ^= 0xff
	inv.Roles[0] = "owner"
	gotInv := get(t, s, store.Tx.GetInvitation, "inv_a1")
	gotInv.TokenHash[1] ^= 0xff
	same(t, "invitation after edits", get(t, s, store.Tx.GetInvitationByTokenHash, sha("token-a1")), invitationRow("inv_a1", "org_a1", "token-a1"))

	k := keyRow("key_a1", "sa_a1", "org_a1")
	do(t, s, store.Tx.InsertAPIKey, k)
	*k.ExpiresAt = at(1)
	gotKey := get(t, s, store.Tx.GetAPIKey, "key_a1")
	*gotKey.ExpiresAt = at(2)
	gotKey.Permissions[0] = "everything"
	same(t, "API key after edits", get(t, s, store.Tx.GetAPIKey, "key_a1"), keyRow("key_a1", "sa_a1", "org_a1"))

	d := delegationRow("dlg_a1", "org_a1")
	do(t, s, store.Tx.InsertDelegation, d)
	d.Scopes[0] = "billing"
	*d.ExpiresAt = at(1)
	gotD := get(t, s, store.Tx.GetDelegation, "dlg_a1")
	gotD.Scopes[1] = "billing"
	*gotD.ExpiresAt = at(2)
	listedD := get(t, s, store.Tx.ListDelegations, "org_a1")
	listedD[0].Scopes[0] = "audit"
	same(t, "delegation after edits", get(t, s, store.Tx.GetDelegation, "dlg_a1"), delegationRow("dlg_a1", "org_a1"))

	im := impersonationRow("imp_a1", "org_a1")
	im.StartedAt, im.ExpiresAt = ptr(at(3)), ptr(at(33))
	do(t, s, store.Tx.InsertImpersonation, im)
	im.Scopes[0] = "*"
	*im.StartedAt = at(1)
	gotIm := get(t, s, store.Tx.GetImpersonation, "imp_a1")
	gotIm.Scopes[1] = "*"
	*gotIm.ExpiresAt = at(2)
	wantIm := impersonationRow("imp_a1", "org_a1")
	wantIm.StartedAt, wantIm.ExpiresAt = ptr(at(3)), ptr(at(33))
	same(t, "impersonation after edits", get(t, s, store.Tx.GetImpersonation, "imp_a1"), wantIm)

	m := memberRow("org_a1", "usr_a1", "admin")
	do(t, s, store.Tx.PutMembership, m)
	m.Roles[0] = "owner"
	gotM := get(t, s, store.Tx.UserMemberships, "usr_a1")
	gotM[0].Roles[0] = "owner"
	same(t, "membership after edits", get(t, s, store.Tx.UserMemberships, "usr_a1"), []store.Membership{memberRow("org_a1", "usr_a1", "admin")})

	ev := event("org_a1", 1, 1, "usr_a1", "organization.create")
	do(t, s, store.Tx.AppendAudit, ev)
	ev.Details["via"] = "edited"
	ev.Details["changed"].(map[string]any)["slug"].([]any)[0] = "edited"
	chain := get(t, s, store.Tx.AuditChain, "org_a1")
	chain[0].Details["changed"].(map[string]any)["slug"] = "edited"
	evs, _ := get2(t, s, store.AuditFilter{Org: "org_a1"})
	evs[0].Details["via"] = "edited"
	same(t, "audit event after edits", get(t, s, store.Tx.AuditChain, "org_a1"), []audit.Event{event("org_a1", 1, 1, "usr_a1", "organization.create")})

	e := outboxEntry("organization.create")
	e.Seq = appendOutbox(t, s, e)
	want := e
	want.Updates, want.DeleteFilters = outboxEntry("").Updates, outboxEntry("").DeleteFilters
	e.Updates[0].Relationship.Caveat.Context["cidrs"].([]any)[0] = "0.0.0.0/0"
	*e.Updates[0].Relationship.ExpiresAt = at(1)
	e.DeleteFilters[0].Subject.ID = "usr_zz"
	pending := get(t, s, store.Tx.PendingOutbox, 0)
	pending[0].Updates[0].Relationship.Caveat.Name = "edited"
	same(t, "outbox entry after edits", get(t, s, store.Tx.PendingOutbox, 0), []store.OutboxEntry{want})
}

func testReadyClose(t *testing.T, s store.Store) {
	if err := s.Ready(t.Context()); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close twice: %v", err)
	}
}
