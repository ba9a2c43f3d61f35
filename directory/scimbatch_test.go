package directory

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
	"github.com/trellis-iam/trellis/store/memory"
)

// writeCounter counts the writes that reach the engine.
type writeCounter struct {
	engine.Engine
	writes atomic.Int64
}

func (w *writeCounter) WriteRelationships(ctx context.Context, u []engine.RelationshipUpdate) (string, error) {
	w.writes.Add(1)
	return w.Engine.WriteRelationships(ctx, u)
}

// TestSCIMBatchIsOneOperation: a batch's kept steps commit together with one
// write to the graph; a step that fails, or that grants more than its
// principal holds, is undone entirely (rows, tuples, audit events) while the
// others stay; the refused escalation is audited; the principal's authority
// is still weighed per step.
func TestSCIMBatchIsOneOperation(t *testing.T) {
	ctx := t.Context()
	eng := systemEngine(t)
	graph := &writeCounter{Engine: eng}
	st := memory.New()
	s, err := New(Deps{Store: st, Graph: graph}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	prov := Provider("test")
	acme, err := s.CreateOrganization(ctx, prov, CreateOrg{Name: "Acme", Slug: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ClaimDomain(ctx, prov, "acme", "acme.example"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.VerifyDomainClaim(ctx, prov, "acme", "acme.example", VerifyDomain{Method: "manual", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	// the token's creator manages members through a delegation: it may not
	// put the admin role anywhere
	d, err := s.CreateUser(ctx, prov, CreateUser{Email: "delegate@partner.example"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delegate(ctx, prov, "acme", CreateDelegation{Grantee: "user:" + d.ID, Scopes: []string{"members"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutSCIMMappings(ctx, prov, "acme", SCIMMappings{Mappings: []SCIMMapping{{Group: "Admins", Roles: []string{"admin"}}}}); err != nil {
		t.Fatal(err)
	}
	p := Principal{Kind: KindUser, ID: d.ID, Org: acme.ID}

	before := graph.writes.Load()
	var ann, bob SCIMRecord
	var stepErrs []error
	err = s.SCIMBatch(ctx, p, acme.ID, func(b *SCIMBatch) error {
		stepErrs = nil // fn runs again when a step fails (SCIMBatch)
		steps := []func() error{
			func() (err error) {
				ann, _, err = b.PutUser("", SCIMUserState{UserName: "ann@acme.example", Active: true}, AnyVersion)
				return err
			},
			func() (err error) {
				bob, _, err = b.PutUser("", SCIMUserState{UserName: "bob@acme.example", Active: true}, AnyVersion)
				return err
			},
			func() error { // mapped to admin: beyond the delegate's authority
				_, _, err := b.PutGroup("", SCIMGroupState{DisplayName: "Admins", Members: []string{ann.ID}}, AnyVersion)
				return err
			},
			func() error { // a second ann: uniqueness
				_, _, err := b.PutUser("", SCIMUserState{UserName: "ann@acme.example", Active: true}, AnyVersion)
				return err
			},
			func() error {
				_, _, err := b.PutGroup("", SCIMGroupState{DisplayName: "Staff", Members: []string{ann.ID, bob.ID}}, AnyVersion)
				return err
			},
		}
		for _, fn := range steps {
			stepErrs = append(stepErrs, b.Step(fn))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("batch: %v", err)
	}
	if stepErrs[0] != nil || stepErrs[1] != nil || stepErrs[4] != nil {
		t.Fatalf("kept steps failed: %v", stepErrs)
	}
	if !errors.Is(stepErrs[2], trellis.ErrForbidden) || !errors.Is(stepErrs[3], trellis.ErrConflict) {
		t.Fatalf("step errors %v: want the escalation forbidden and the second ann a conflict", stepErrs)
	}
	if n := graph.writes.Load() - before; n != 1 {
		t.Errorf("the batch reached the graph in %d writes, want 1", n)
	}
	if _, found, err := s.SCIMByName(ctx, prov, acme.ID, store.SCIMGroup, "Admins"); err != nil || found {
		t.Errorf("the refused group is provisioned (%v, %v)", found, err)
	}
	staff, found, err := s.SCIMByName(ctx, prov, acme.ID, store.SCIMGroup, "Staff")
	if err != nil || !found {
		t.Fatalf("Staff: %v, %v", found, err)
	}
	// the graph: both users are members and in Staff; no group holds admin
	for _, u := range []string{ann.ID, bob.ID} {
		for _, c := range []struct {
			res  engine.ObjectRef
			perm string
		}{{orgRef(acme.ID), "access"}, {groupRef(staff.ID), "member"}} {
			r, err := eng.Check(ctx, engine.CheckRequest{Resource: c.res, Permission: c.perm, Subject: subj("user", u),
				Consistency: engine.Consistency{Mode: engine.FullyConsistent}})
			if err != nil || !r.Allowed() {
				t.Errorf("%s %s %s: %v, %v", u, c.perm, c.res, r.Allowed(), err)
			}
		}
		if r, err := eng.Check(ctx, engine.CheckRequest{Resource: orgRef(acme.ID), Permission: "manage", Subject: subj("user", u),
			Consistency: engine.Consistency{Mode: engine.FullyConsistent}}); err != nil || r.Allowed() {
			t.Errorf("%s manages acme (%v, %v): the refused step's admin role leaked", u, r.Allowed(), err)
		}
	}
	// audit: every kept change, the refusal, nothing of the undone steps
	var actions []string
	_ = st.Read(ctx, func(tx store.Tx) error {
		evs, err := tx.AuditChain(ctx, acme.ID)
		for _, ev := range evs {
			actions = append(actions, ev.Action)
		}
		return err
	})
	count := func(a string) int {
		n := 0
		for _, x := range actions {
			if x == a {
				n++
			}
		}
		return n
	}
	if count("scim.user.create") != 2 || count("scim.group.create") != 1 || count("group.create") != 1 || count("scim.group.put.denied") != 1 {
		t.Errorf("audit of the batch: %v", actions)
	}
	if slices.Contains(actions, "scim.bulk.denied") {
		t.Errorf("the whole batch was refused: %v", actions)
	}

	// a group created and deleted in one batch leaves nothing in the graph
	err = s.SCIMBatch(ctx, p, acme.ID, func(b *SCIMBatch) error {
		return b.Step(func() error {
			g, _, err := b.PutGroup("", SCIMGroupState{DisplayName: "Short-lived", Members: []string{ann.ID}}, AnyVersion)
			if err != nil {
				return err
			}
			return b.DeleteGroup(g.ID, AnyVersion)
		})
	})
	if err != nil {
		t.Fatalf("create and delete a group in one batch: %v", err)
	}
	rels, err := engine.ReadAll(ctx, eng, engine.RelationshipFilter{ResourceType: "group"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rels {
		if r.Resource.ID != staff.ID {
			t.Errorf("a relationship of a group deleted in its batch survives: %s", r)
		}
	}

	// an error from fn undoes every step
	before = graph.writes.Load()
	err = s.SCIMBatch(ctx, p, acme.ID, func(b *SCIMBatch) error {
		if err := b.Step(func() error {
			_, _, err := b.PutUser("", SCIMUserState{UserName: "cy@acme.example", Active: true}, AnyVersion)
			return err
		}); err != nil {
			return err
		}
		return trellis.ErrUnavailable
	})
	if !errors.Is(err, trellis.ErrUnavailable) {
		t.Fatalf("a failed batch: %v", err)
	}
	if _, found, _ := s.SCIMByName(ctx, prov, acme.ID, store.SCIMUser, "cy@acme.example"); found || graph.writes.Load() != before {
		t.Errorf("a failed batch left its step (found %v, %d writes)", found, graph.writes.Load()-before)
	}
}
