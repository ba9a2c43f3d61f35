package benchmarks

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/history"
	"github.com/trellis-iam/trellis/schema"
	"github.com/trellis-iam/trellis/store"
	"github.com/trellis-iam/trellis/store/memory"
)

const accessApp = `definition document {
	relation org: organization
	relation viewer: user | group#member
	permission view = viewer + org->access
	permission edit = org->manage
}`

// BenchmarkAccessReview measures the access review's queries as a provider
// admin on 1,000 tenants (each: an organization with an admin, three members,
// a group holding membership, a region below it with its own member, and a
// document), 13,000 relationships in an embedded SpiceDB (memdb):
// who-can on a document and on an organization, a user's effective access,
// the blast radius of making a member admin, and access as of a past time
// (a replay of the relationship changelog).
//
//	go test -run '^$' -bench BenchmarkAccessReview -benchtime 20x ./benchmarks/
func BenchmarkAccessReview(b *testing.B) {
	ctx := context.Background()
	eng, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	if _, err := schema.NewManager(eng).Bootstrap(ctx, accessApp); err != nil {
		b.Fatal(err)
	}
	st := memory.New()
	dir, err := directory.New(directory.Deps{Store: st, Graph: eng}, directory.Config{})
	if err != nil {
		b.Fatal(err)
	}
	const tenants = 1000
	obj := func(typ, id string) engine.ObjectRef { return engine.ObjectRef{Type: typ, ID: id} }
	sub := func(typ, id, rel string) engine.SubjectRef {
		return engine.SubjectRef{Object: obj(typ, id), Relation: rel}
	}
	var ups []engine.RelationshipUpdate
	var users []store.User
	add := func(res engine.ObjectRef, rel string, s engine.SubjectRef) {
		ups = append(ups, engine.RelationshipUpdate{Operation: engine.OpTouch, Relationship: engine.Relationship{Resource: res, Relation: rel, Subject: s}})
	}
	for i := range tenants {
		t, r, g := fmt.Sprintf("t%d", i), fmt.Sprintf("r%d", i), fmt.Sprintf("g%d", i)
		add(obj("organization", t), "platform", sub("platform", "trellis", ""))
		add(obj("organization", r), "parent", sub("organization", t, ""))
		add(obj("organization", r), "lineage", sub("organization", t, ""))
		add(obj("organization", t), "admin", sub("user", fmt.Sprintf("a%d", i), ""))
		for j := range 3 {
			add(obj("organization", t), "member", sub("user", fmt.Sprintf("m%d-%d", i, j), ""))
		}
		add(obj("group", g), "org", sub("organization", t, ""))
		add(obj("group", g), "member", sub("user", fmt.Sprintf("m%d-0", i), ""))
		add(obj("group", g), "member", sub("user", fmt.Sprintf("m%d-1", i), ""))
		add(obj("organization", t), "member", sub("group", g, "member"))
		add(obj("organization", r), "member", sub("user", fmt.Sprintf("rm%d", i), ""))
		add(obj("document", fmt.Sprintf("d%d", i)), "org", sub("organization", t, ""))
		add(obj("document", fmt.Sprintf("d%d", i)), "viewer", sub("group", g, "member"))
		for _, u := range []string{fmt.Sprintf("a%d", i), fmt.Sprintf("m%d-0", i), fmt.Sprintf("m%d-1", i), fmt.Sprintf("m%d-2", i), fmt.Sprintf("rm%d", i)} {
			users = append(users, store.User{ID: u, Email: u + "@bench.example", Status: store.StatusActive, CreatedAt: time.Now(), UpdatedAt: time.Now()})
		}
	}
	for start := 0; start < len(ups); start += engine.MaxUpdatesPerWrite {
		if _, err := eng.WriteRelationships(ctx, ups[start:min(start+engine.MaxUpdatesPerWrite, len(ups))]); err != nil {
			b.Fatal(err)
		}
	}
	if err := st.InTx(ctx, func(tx store.Tx) error {
		for _, u := range users {
			if err := tx.InsertUser(ctx, u); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	rec := &history.Recorder{Graph: eng, Store: st}
	if err := rec.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	p := directory.Provider("bench")
	b.Logf("%d tenants, %d relationships", tenants, len(ups))
	b.Run("who-can/document", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := dir.WhoCan(ctx, p, directory.WhoCanQuery{Resource: obj("document", fmt.Sprintf("d%d", i%tenants)), Permission: "view"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("who-can/region-access", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := dir.WhoCan(ctx, p, directory.WhoCanQuery{Resource: obj("organization", fmt.Sprintf("r%d", i%tenants)), Permission: "access"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("effective-access/member", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := dir.EffectiveAccess(ctx, p, fmt.Sprintf("m%d-0", i%tenants), ""); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("blast-radius/make-admin", func(b *testing.B) {
		var objects, loaded int
		for i := 0; b.Loop(); i++ {
			res, err := dir.BlastRadius(ctx, p, []engine.RelationshipUpdate{{Operation: engine.OpTouch, Relationship: engine.Relationship{
				Resource: obj("organization", fmt.Sprintf("t%d", i%tenants)), Relation: "admin", Subject: sub("user", fmt.Sprintf("m%d-2", i%tenants), "")}}})
			if err != nil {
				b.Fatal(err)
			}
			objects, loaded = res.Totals.Objects, res.Totals.Relationships
		}
		b.ReportMetric(float64(objects), "objects")
		b.ReportMetric(float64(loaded), "relationships")
	})
	b.Run("access-at/document", func(b *testing.B) {
		at := time.Now()
		for i := 0; b.Loop(); i++ {
			if _, err := dir.AccessAt(ctx, p, directory.AccessAtQuery{Resource: obj("document", fmt.Sprintf("d%d", i%tenants)), Permission: "view", At: at}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
