package api_test

import (
	"bytes"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trellis-iam/trellis/audit"
)

// auditEvents lists GET path's events, following nextCursor.
func auditEvents(h *harness, c caller, path string) []map[string]any {
	h.t.Helper()
	var out []map[string]any
	cursor := ""
	for range 100 {
		p := path
		if cursor != "" {
			sep := "?"
			if strings.Contains(p, "?") {
				sep = "&"
			}
			p += sep + "cursor=" + url.QueryEscape(cursor)
		}
		page := c.do(200, "GET", p, nil)
		out = append(out, items(h.t, page, "events")...)
		if cursor = str(page, "nextCursor"); cursor == "" {
			return out
		}
	}
	h.t.Fatalf("GET %s: paging did not end", path)
	return nil
}

func seqOf(ev map[string]any) int64 { n, _ := ev["seq"].(float64); return int64(n) }

// find returns the event with action and target, failing the test if there is none.
func find(t testing.TB, events []map[string]any, action, target string) map[string]any {
	t.Helper()
	for _, ev := range events {
		if ev["action"] == action && ev["target"] == target {
			return ev
		}
	}
	t.Fatalf("no %s event on %s among %d events", action, target, len(events))
	return nil
}

func TestAuditLog(t *testing.T) {
	h := newHarness(t, docApp)
	tr := newTree(h)
	p := h.provider()
	ca := h.as(tr.customerToken)
	start := h.clock.Now()

	// a lifecycle with three kinds of actors
	x := createUser(h, "xia@customer.example")
	ca.do(201, "PUT", "/v1/organizations/customer/members/"+x, map[string]any{"roles": []string{"member"}})
	ca.do(200, "PUT", "/v1/organizations/customer/members/"+x, map[string]any{"status": "suspended"})
	p.do(201, "POST", "/v1/organizations/customer/roles", map[string]any{"key": "members-admin", "permissions": []string{"manage_members"}})
	sa := str(p.do(201, "POST", "/v1/organizations/customer/service-accounts", map[string]any{"name": "bot", "roles": []string{"member", "members-admin"}}), "id")
	key := p.do(201, "POST", "/v1/organizations/customer/service-accounts/"+sa+"/keys", map[string]any{"permissions": []string{"manage_members"}})
	y := createUser(h, "yoko@customer.example")
	h.as(str(key, "key")).do(201, "PUT", "/v1/organizations/customer/members/"+y, map[string]any{"roles": []string{"member"}})
	h.clock.Advance(time.Hour)
	later := h.clock.Now()
	ca = h.as(h.token(tr.customerAdmin, tr.customer)) // the first token expired
	ca.do(204, "DELETE", "/v1/organizations/customer/members/"+x, nil)

	events := auditEvents(h, p, "/v1/organizations/customer/audit")
	if len(events) < 10 {
		t.Fatalf("customer audit holds %d events", len(events))
	}
	prev := ""
	for i, ev := range events {
		if seqOf(ev) != int64(i+1) || ev["organization"] != tr.customer || ev["prevHash"] != prev || len(str(ev, "hash")) != 64 {
			t.Fatalf("event %d breaks the chain (prevHash want %q): %v", i, prev, ev)
		}
		if _, err := time.Parse(time.RFC3339Nano, str(ev, "at")); err != nil {
			t.Errorf("event %d at: %v", i, err)
		}
		prev = str(ev, "hash")
	}
	first := events[0]
	wantEqual(t, "first event", []any{first["action"], first["actor"], first["target"]}, []any{"organization.create", "provider:admin-key", "organization:" + tr.customer})
	byUser := find(t, events, "member.add", "user:"+x)
	wantEqual(t, "member.add by the customer admin", []any{byUser["actor"], byUser["details"]},
		[]any{"user:" + tr.customerAdmin, map[string]any{"roles": []any{"member"}, "status": "active"}})
	byKey := find(t, events, "member.add", "user:"+y)
	wantEqual(t, "member.add by the API key", []any{byKey["actor"], byKey["details"].(map[string]any)["apiKey"]}, []any{"service_account:" + sa, key["id"]})
	wantEqual(t, "suspension by the customer admin", find(t, events, "member.update", "user:"+x)["actor"], "user:"+tr.customerAdmin)
	wantEqual(t, "removal", find(t, events, "member.remove", "user:"+x)["actor"], "user:"+tr.customerAdmin)
	wantEqual(t, "token issue", find(t, events, "token.issue", "user:"+tr.customerAdmin)["actor"], "provider:admin-key")

	// filters, alone and together, and paging through them
	adds := auditEvents(h, p, "/v1/organizations/customer/audit?action=member.add")
	wantEqual(t, "member.add targets", sortedStrings(pluck(adds, "target")...),
		sortedStrings("user:"+tr.customerAdmin, "user:"+tr.customerMember, "user:"+x, "user:"+y))
	mine := auditEvents(h, p, "/v1/organizations/customer/audit?actor=user:"+tr.customerAdmin)
	wantEqual(t, "customer admin's actions", pluck(mine, "action"), []string{"member.add", "member.update", "member.remove"})
	both := auditEvents(h, p, "/v1/organizations/customer/audit?actor=user:"+tr.customerAdmin+"&action=member.update")
	wantEqual(t, "actor and action", pluck(both, "target"), []string{"user:" + x})
	wantEqual(t, "service account's actions", pluck(auditEvents(h, p, "/v1/organizations/customer/audit?actor=service_account:"+sa), "action"), []string{"member.add"})
	wantEqual(t, "no such action", len(auditEvents(h, p, "/v1/organizations/customer/audit?action=nothing.happened")), 0)
	since := auditEvents(h, p, "/v1/organizations/customer/audit?since="+url.QueryEscape(later.Format(time.RFC3339)))
	wantEqual(t, "events since the clock moved", pluck(since, "action"), []string{"token.issue", "member.remove"})
	until := auditEvents(h, p, "/v1/organizations/customer/audit?until="+url.QueryEscape(start.Add(time.Minute).Format(time.RFC3339)))
	wantEqual(t, "events until then", len(until)+len(since), len(events))
	paged := auditEvents(h, p, "/v1/organizations/customer/audit?pageSize=3")
	wantEqual(t, "paged seqs", pluck(paged, "hash"), pluck(events, "hash"))
	p.fails(400, "invalid_argument", "since", "GET", "/v1/organizations/customer/audit?since=yesterday", nil)
	p.fails(400, "invalid_argument", "pageSize", "GET", "/v1/organizations/customer/audit?pageSize=0x10", nil)

	// verification, online and offline
	v := p.do(200, "GET", "/v1/organizations/customer/audit/verify", nil)
	wantEqual(t, "verify", v, map[string]any{"valid": true, "events": float64(len(events))})
	exported := func(want int) []audit.Event {
		t.Helper()
		resp, body := p.raw("GET", "/v1/organizations/customer/audit/export")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("export: status %d, Content-Type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
		if len(lines) != want || !bytes.HasSuffix(body, []byte("\n")) {
			t.Fatalf("export holds %d lines, want %d newline-terminated", len(lines), want)
		}
		for i, line := range lines {
			var obj map[string]any
			if err := json.Unmarshal([]byte(line), &obj); err != nil || obj["organization"] != tr.customer {
				t.Fatalf("export line %d: %v: %s", i+1, err, line)
			}
		}
		evs, err := audit.ReadNDJSON(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	evs := exported(len(events))
	head := audit.Head{Seq: evs[len(evs)-1].Seq, Hash: evs[len(evs)-1].Hash}
	if got := audit.Verify(evs, head); !got.Valid || got.Events != len(events) {
		t.Fatalf("exported chain does not verify: %+v", got)
	}
	wantEqual(t, "exported hashes", func() []string {
		out := []string{}
		for _, ev := range evs {
			out = append(out, ev.Hash)
		}
		return out
	}(), pluck(events, "hash"))
	wantEqual(t, "export filename", func() string {
		resp, _ := p.raw("GET", "/v1/organizations/customer/audit/export")
		return resp.Header.Get("Content-Disposition")
	}(), `attachment; filename="audit-customer.ndjson"`)

	// tampering with a stored event breaks the chain exactly there
	k := seqOf(byUser)
	if err := h.store.TamperAudit(tr.customer, k, func(ev *audit.Event) { ev.Action = "member.remove" }); err != nil {
		t.Fatal(err)
	}
	v = p.do(200, "GET", "/v1/organizations/customer/audit/verify", nil)
	wantEqual(t, "verify after tampering", []any{v["valid"], v["brokenAt"]}, []any{false, float64(k)})
	if got := audit.Verify(exported(len(events)), head); got.Valid || got.BrokenAt == nil || *got.BrokenAt != k {
		t.Errorf("offline verify after tampering: %+v, want broken at %d", got, k)
	}
	if err := h.store.TamperAudit(tr.customer, k, func(ev *audit.Event) { ev.Action = "member.add" }); err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "verify after undoing", p.do(200, "GET", "/v1/organizations/customer/audit/verify", nil)["valid"], true)
	// so does deleting one
	gone := seqOf(byKey)
	if err := h.store.DeleteAuditEvent(tr.customer, gone); err != nil {
		t.Fatal(err)
	}
	v = p.do(200, "GET", "/v1/organizations/customer/audit/verify", nil)
	wantEqual(t, "verify after deletion", []any{v["valid"], v["brokenAt"]}, []any{false, float64(gone)})
	if got := audit.Verify(exported(len(events)-1), head); got.Valid || got.BrokenAt == nil || *got.BrokenAt != gone {
		t.Errorf("offline verify after deletion: %+v, want broken at %d", got, gone)
	}
	// each organization has its own chain
	wantEqual(t, "reseller chain", p.do(200, "GET", "/v1/organizations/reseller/audit/verify", nil)["valid"], true)

	// who may read it
	cole := h.as(h.token(tr.customerMember, tr.customer))
	for _, path := range []string{"/audit", "/audit/verify", "/audit/export"} {
		cole.fails(403, "forbidden", "", "GET", "/v1/organizations/customer"+path, nil)
		ca.fails(404, "not_found", "", "GET", "/v1/organizations/reseller"+path, nil)
	}
	ca.do(200, "GET", "/v1/organizations/customer/audit", nil)
	ca.do(200, "GET", "/v1/organizations/region/audit/verify", nil)

	// the provider's view across organizations
	all := auditEvents(h, p, "/v1/audit?pageSize=50")
	orgs := map[string]bool{}
	for _, ev := range all {
		orgs[str(ev, "organization")] = true
	}
	for _, org := range []string{tr.reseller, tr.customer, tr.region, tr.sibling, ""} {
		if !orgs[org] {
			t.Errorf("GET /v1/audit lacks events of organization %q (has %v)", org, orgs)
		}
	}
	onlyCustomer := auditEvents(h, p, "/v1/audit?organization=customer&action=member.add")
	if len(onlyCustomer) != 3 || slices.ContainsFunc(onlyCustomer, func(ev map[string]any) bool { return ev["organization"] != tr.customer }) {
		t.Errorf("GET /v1/audit?organization=customer&action=member.add: %v", onlyCustomer) // y's was deleted above
	}
	userCreates := auditEvents(h, p, "/v1/audit?action=user.create")
	wantEqual(t, "user.create events", len(userCreates), 7)
	ca.fails(403, "forbidden", "", "GET", "/v1/audit", nil)
	h.as(h.token(tr.resellerAdmin, tr.reseller)).fails(403, "forbidden", "", "GET", "/v1/audit", nil)
	h.as(str(key, "key")).fails(403, "forbidden", "", "GET", "/v1/audit", nil)
	p.fails(404, "not_found", "", "GET", "/v1/audit?organization=no-such-org", nil)
}
