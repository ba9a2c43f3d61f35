package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/engine"
)

// heldEngine is the directory's engine with a latch: once armed for an
// organization, the next read of that organization's relationships (a move
// preview's first) waits until released or until its context ends. Tests hold
// previews running with it, without sleeping.
type heldEngine struct {
	engine.Engine
	mu      sync.Mutex
	held    map[string]chan struct{}
	entered chan string
}

func (e *heldEngine) hold(org string) (release func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ch := make(chan struct{})
	e.held[org] = ch
	return sync.OnceFunc(func() { close(ch) })
}

// waitEntered waits for a held read to start; a preview that never reads the
// held organization fails the test rather than hanging it.
func (e *heldEngine) waitEntered(t *testing.T, org string) {
	t.Helper()
	select {
	case got := <-e.entered:
		if got != org {
			t.Fatalf("held read of %s, want %s", got, org)
		}
	case <-time.After(time.Minute):
		t.Fatalf("no read of organization %s's relationships started within a minute", org)
	}
}

func (e *heldEngine) ReadRelationships(ctx context.Context, req engine.ReadRequest) (engine.ReadPage, error) {
	if req.Filter.ResourceType == "organization" {
		e.mu.Lock()
		ch, ok := e.held[req.Filter.ResourceID]
		delete(e.held, req.Filter.ResourceID)
		e.mu.Unlock()
		if ok {
			e.entered <- req.Filter.ResourceID
			select {
			case <-ch:
			case <-ctx.Done():
				return engine.ReadPage{}, ctx.Err()
			}
		}
	}
	return e.Engine.ReadRelationships(ctx, req)
}

// newHeldHarness is newHarness with the directory configured by cfg and
// reading the graph through a heldEngine.
func newHeldHarness(t *testing.T, cfg directory.Config) (*harness, *heldEngine) {
	t.Helper()
	var held *heldEngine
	h := newHarnessWith(t, docApp, cfg, func(e engine.Engine) engine.Engine {
		held = &heldEngine{Engine: e, held: map[string]chan struct{}{}, entered: make(chan string, 4)}
		return held
	})
	return h, held
}

// answer is one response read off the test goroutine.
type answer struct {
	status int
	body   map[string]any
	err    error
}

// postAsync sends a POST as key and delivers the answer on the channel.
func (h *harness) postAsync(key, path string, body any) <-chan answer {
	out := make(chan answer, 1)
	raw, _ := json.Marshal(body)
	go func() {
		req, err := http.NewRequest("POST", h.url+path, bytes.NewReader(raw))
		if err != nil {
			out <- answer{err: err}
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		a := answer{status: resp.StatusCode, body: map[string]any{}}
		a.err = json.NewDecoder(resp.Body).Decode(&a.body)
		out <- a
	}()
	return out
}

func (a answer) want(t *testing.T, what string, status int) map[string]any {
	t.Helper()
	if a.err != nil || a.status != status {
		t.Fatalf("%s: status %d (%v), want %d: %v", what, a.status, a.err, status, a.body)
	}
	return a.body
}

// systemRelationships counts every relationship of the system definitions.
func systemRelationships(t *testing.T, h *harness) int {
	t.Helper()
	n := 0
	for _, typ := range []string{"platform", "organization", "group", "role", "role_binding", "service_account"} {
		rels, err := engine.ReadAll(context.Background(), h.graph, engine.RelationshipFilter{ResourceType: typ}, 0)
		if err != nil {
			t.Fatal(err)
		}
		n += len(rels)
	}
	return n
}

// TestFinding8MovePreviewBounded: a move preview, which any admin of a parent
// may ask for, once copied every system relationship of every tenant into a
// scratch SpiceDB, any number at once, for as long as that took. Now it loads
// only what the moved subtree's permissions depend on (other tenants add
// nothing), one preview per organization runs at a time (409), a few in all
// (503), each within a time bound (503) and a bound on what it loads (422).
func TestFinding8MovePreviewBounded(t *testing.T) {
	h, held := newHeldHarness(t, directory.Config{MovePreviews: 2, MovePreviewTimeout: 5 * time.Minute}) // the time bound is tried below, on its own
	tr := newTree(h)
	p := h.provider()
	other := createOrg(h, testKey, "Reseller Two", "reseller-two", "")
	putMember(h, testKey, other, createUser(h, "olga@reseller-two.example"), "admin")
	move := map[string]any{"parent": "reseller-two", "dryRun": true}

	// only the subtree's share is loaded, however many tenants there are
	first := p.do(200, "POST", "/v1/organizations/customer/move", move)
	loaded := func(res map[string]any) int {
		n, _ := res["impact"].(map[string]any)["totals"].(map[string]any)["relationships"].(float64)
		return int(n)
	}
	if loaded(first) == 0 {
		t.Fatalf("the preview reports no relationships loaded: %v", first["impact"])
	}
	for i := range 12 { // other tenants: organizations, members, groups, roles
		slug := fmt.Sprintf("tenant-%d", i)
		top := createOrg(h, testKey, "Tenant", slug, "")
		sub := createOrg(h, testKey, "Tenant Sub", slug+"-sub", top)
		admin := createUser(h, fmt.Sprintf("admin@%s.example", slug))
		putMember(h, testKey, top, admin, "admin")
		p.do(201, "POST", "/v1/organizations/"+top+"/roles", map[string]any{"key": "helper", "permissions": []string{"manage_members"}})
		for j := range 3 {
			putMember(h, testKey, sub, createUser(h, fmt.Sprintf("m%d@%s.example", j, slug)), "member", "helper")
		}
		p.do(201, "POST", "/v1/organizations/"+sub+"/groups", map[string]any{"name": "Staff", "roles": []string{"helper"}})
	}
	again := p.do(200, "POST", "/v1/organizations/customer/move", move)
	all := systemRelationships(t, h)
	t.Logf("relationships loaded by the preview: %d with 2 tenants, %d with 14; %d system relationships stored", loaded(first), loaded(again), all)
	if loaded(again) != loaded(first) || loaded(again)*4 > all {
		t.Errorf("the preview loaded %d relationships with 2 tenants, %d with 14 (%d stored): want the same few", loaded(first), loaded(again), all)
	}
	wantEqual(t, "preview with more tenants", again["impact"], first["impact"])

	// one preview per organization at a time, a few in all
	release := held.hold(tr.customer)
	defer release()
	slow := h.postAsync(tr.resellerToken, "/v1/organizations/customer/move", map[string]any{"parent": "sibling", "dryRun": true})
	held.waitEntered(t, tr.customer)
	busy := h.as(tr.resellerToken).fails(409, "move_preview_running", "", "POST", "/v1/organizations/customer/move", map[string]any{"parent": "sibling", "dryRun": true})
	if !strings.Contains(str(busy, "detail"), "already being computed") {
		t.Errorf("409 detail %q", busy["detail"])
	}
	p.fails(409, "move_preview_running", "", "POST", "/v1/organizations/customer/move", map[string]any{"parent": "reseller-two"}) // the move itself too
	release2 := held.hold(tr.sibling)
	defer release2()
	slow2 := h.postAsync(tr.resellerToken, "/v1/organizations/sibling/move", map[string]any{"parent": "customer", "dryRun": true})
	held.waitEntered(t, tr.sibling)
	full := h.as(tr.resellerToken).fails(503, "move_previews_busy", "", "POST", "/v1/organizations/region/move", map[string]any{"parent": "sibling", "dryRun": true})
	if !strings.Contains(str(full, "detail"), "2 move previews") {
		t.Errorf("503 detail %q", full["detail"])
	}
	release()
	release2()
	(<-slow).want(t, "the held preview", 200)
	(<-slow2).want(t, "the second held preview", 200)
	h.as(tr.resellerToken).do(200, "POST", "/v1/organizations/region/move", map[string]any{"parent": "sibling", "dryRun": true})
	wantEqual(t, "parent after previews", p.do(200, "GET", "/v1/organizations/customer", nil)["parent"], tr.reseller)

	// bounded in time and in what it loads
	hb, heldB := newHeldHarness(t, directory.Config{MovePreviewTimeout: 2 * time.Second, MovePreviewMaxRelationships: 5})
	trB := newTree(hb)
	releaseB := heldB.hold(trB.sibling) // the new parent: what the walk reads first (the bound of 5 is reached before the subtree's own reads)
	defer releaseB()
	late := hb.postAsync(trB.resellerToken, "/v1/organizations/customer/move", map[string]any{"parent": "sibling", "dryRun": true})
	heldB.waitEntered(t, trB.sibling)
	timedOut := (<-late).want(t, "a preview past its time bound", 503)
	if timedOut["code"] != "move_preview_timeout" || !strings.Contains(str(timedOut, "detail"), "not computed within 2s") {
		t.Errorf("503 past the time bound: %v", timedOut)
	}
	tooLarge := hb.as(trB.resellerToken).fails(422, "move_too_large", "", "POST", "/v1/organizations/customer/move", map[string]any{"parent": "sibling", "dryRun": true})
	if !strings.Contains(str(tooLarge, "detail"), "more than 5 relationships") {
		t.Errorf("422 detail %q", tooLarge["detail"])
	}
	hb.provider().fails(422, "move_too_large", "", "POST", "/v1/organizations/customer/move", map[string]any{"parent": "sibling"})
	wantEqual(t, "parent after a refused move", hb.provider().do(200, "GET", "/v1/organizations/customer", nil)["parent"], trB.reseller)
}

// TestFinding12RolesOfFormerAncestorUnboundAfterMove: custom roles belong to
// the organization that defines them and are bound in its subtree. A move out
// from under that organization once left the bindings in place, so the
// former ancestor's admins could still widen what the role granted in an
// organization they no longer administer. The move now unbinds them (rows,
// tuples, audit), and its preview shows the losses.
func TestFinding12RolesOfFormerAncestorUnboundAfterMove(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	p := h.provider()
	other := createOrg(h, testKey, "Reseller Two", "reseller-two", "")
	olga := createUser(h, "olga@reseller-two.example")
	putMember(h, testKey, other, olga, "admin")
	rita := h.as(tr.resellerToken)
	customer, region := "organization:"+tr.customer, "organization:"+tr.region

	// the reseller's role, held in the customer and the region; the customer's own role
	rita.do(201, "POST", "/v1/organizations/reseller/roles", map[string]any{"key": "people-manager", "permissions": []string{"manage_members"}})
	p.do(201, "POST", "/v1/organizations/customer/roles", map[string]any{"key": "local-auditor", "permissions": []string{"view_audit"}})
	hank, gina, lou := createUser(h, "hank@customer.example"), createUser(h, "gina@customer.example"), createUser(h, "lou@customer.example")
	putMember(h, testKey, tr.customer, hank, "member", "people-manager")
	putMember(h, testKey, tr.customer, lou, "member", "local-auditor")
	putMember(h, testKey, tr.region, gina, "member")
	grp := str(p.do(201, "POST", "/v1/organizations/region/groups", map[string]any{"name": "Managers", "roles": []string{"people-manager"}}), "id")
	p.do(200, "PUT", "/v1/organizations/region/groups/"+grp+"/members/"+gina, nil)
	inv := str(p.do(201, "POST", "/v1/organizations/customer/invitations", map[string]any{"email": "ivy@customer.example", "roles": []string{"people-manager"}}), "id")
	h.expect(true, customer, "manage_members", "user:"+hank)
	h.expect(true, region, "manage_members", "user:"+hank)
	h.expect(true, region, "manage_members", "user:"+gina)

	// the preview names the roles unbound and what their holders lose
	preview := p.do(200, "POST", "/v1/organizations/customer/move", map[string]any{"parent": "reseller-two", "dryRun": true})
	lost := impactSet(t, preview["impact"].(map[string]any), "lost")
	for _, want := range []string{
		"user:" + hank + " " + tr.customer + " manage_members",
		"user:" + hank + " " + tr.region + " manage_members",
		"user:" + gina + " " + tr.region + " manage_members",
	} {
		if !slices.Contains(lost, want) {
			t.Errorf("preview lost %v, want %q among them", lost, want)
		}
	}
	for _, l := range lost {
		if strings.HasPrefix(l, "user:"+lou+" ") {
			t.Errorf("preview: lou loses %q; the customer's own role stays", l)
		}
	}
	unbound := items(t, preview, "rolesUnbound")
	if len(unbound) != 2 {
		t.Fatalf("preview rolesUnbound = %v, want the reseller's role in the customer and in the region", unbound)
	}
	wantEqual(t, "roles unbound", [][]string{
		{str(unbound[0], "organization"), str(unbound[0], "key"), str(unbound[0], "definedOn")},
		{str(unbound[1], "organization"), str(unbound[1], "key"), str(unbound[1], "definedOn")},
	}, [][]string{{tr.customer, "people-manager", tr.reseller}, {tr.region, "people-manager", tr.reseller}})
	wantEqual(t, "holders in the customer", []any{strs(unbound[0]["members"]), strs(unbound[0]["invitations"])}, []any{[]string{hank}, []string{inv}})
	wantEqual(t, "holders in the region", strs(unbound[1]["groups"]), []string{grp})
	h.expect(true, customer, "manage_members", "user:"+hank) // nothing changed yet

	// the move unbinds them
	moved := p.do(200, "POST", "/v1/organizations/customer/move", map[string]any{"parent": "reseller-two"})
	wantEqual(t, "applied", moved["applied"], true)
	wantEqual(t, "unbound by the move", len(items(t, moved, "rolesUnbound")), 2)
	h.expect(false, customer, "manage_members", "user:"+hank)
	h.expect(false, region, "manage_members", "user:"+hank)
	h.expect(false, region, "manage_members", "user:"+gina)
	h.expect(true, customer, "view_audit", "user:"+lou)
	h.canAccess(true, tr.customer, hank)
	h.canAccess(true, tr.region, gina)
	wantEqual(t, "hank's roles", strs(p.do(200, "GET", "/v1/organizations/customer/members/"+hank, nil)["roles"]), []string{"member"})
	wantEqual(t, "lou's roles", strs(p.do(200, "GET", "/v1/organizations/customer/members/"+lou, nil)["roles"]), []string{"member", "local-auditor"})
	wantEqual(t, "group roles", strs(p.do(200, "GET", "/v1/organizations/region/groups/"+grp, nil)["roles"]), []string{})
	for _, i := range items(t, p.do(200, "GET", "/v1/organizations/customer/invitations", nil), "invitations") {
		if i["id"] == inv {
			wantEqual(t, "invitation roles", strs(i["roles"]), []string{"member"})
		}
	}
	if keys := pluck(items(t, p.do(200, "GET", "/v1/organizations/customer/roles", nil), "roles"), "key"); slices.Contains(keys, "people-manager") {
		t.Errorf("roles usable in the moved customer: %v", keys)
	}
	events := items(t, p.do(200, "GET", "/v1/organizations/customer/audit?action=role.unbind", nil), "events")
	if len(events) != 1 || !strings.HasPrefix(str(events[0], "target"), "role:") || events[0]["details"].(map[string]any)["reason"] != "organization.move" {
		t.Errorf("role.unbind events in the customer's chain: %v", events)
	}

	// the former ancestor's admin edits the role: nothing changes in the moved org
	rita.do(200, "PATCH", "/v1/organizations/reseller/roles/people-manager", map[string]any{"permissions": []string{"manage", "manage_members", "view_audit"}})
	for _, perm := range []string{"manage", "manage_members", "view_audit"} {
		h.expect(false, customer, perm, "user:"+hank)
		h.expect(false, region, perm, "user:"+gina)
	}
	rita.fails(404, "not_found", "", "GET", "/v1/organizations/customer", nil)
	// the rows are consistent: the new parent's admin manages the member as usual
	olgaToken := h.token(olga, other)
	putMember(h, olgaToken, tr.customer, hank, "member", "local-auditor")
	h.expect(true, customer, "view_audit", "user:"+hank)

	// an admin (not the provider) moving the region out from under the customer
	// unbinds the customer's role there, within the same authorization
	putMember(h, olgaToken, tr.region, tr.regionMember, "member", "local-auditor")
	h.expect(true, region, "view_audit", "user:"+tr.regionMember)
	out := h.as(olgaToken).do(200, "POST", "/v1/organizations/region/move", map[string]any{"parent": "reseller-two"})
	if got := items(t, out, "rolesUnbound"); len(got) != 1 || got[0]["key"] != "local-auditor" || !slices.Equal(strs(got[0]["members"]), []string{tr.regionMember}) {
		t.Errorf("rolesUnbound of the region's move: %v", got)
	}
	h.expect(false, region, "view_audit", "user:"+tr.regionMember)
	h.expect(true, customer, "view_audit", "user:"+hank)
}
