package api_test

// demoWorld is the part of `trellis serve --demo` the impersonation findings
// of issue 13 were reproduced on:
//
//	northwind (admin rita) ─┬─ globex (admin gary) ── globex-eu
//	                        └─ initech (admin ivan)
//	lone (no admins of its own; delegates members to initech's admins)
type demoWorld struct {
	northwind, globex, globexEU, initech, lone string // organization ids; slugs are these names
	rita, gary, ivan                           string
	garyToken                                  string // scoped to globex
}

func newDemoWorld(h *harness) *demoWorld {
	h.t.Helper()
	w := &demoWorld{}
	w.northwind = createOrg(h, testKey, "Northwind", "northwind", "")
	w.globex = createOrg(h, testKey, "Globex", "globex", w.northwind)
	w.globexEU = createOrg(h, testKey, "Globex EU", "globex-eu", w.globex)
	w.initech = createOrg(h, testKey, "Initech", "initech", w.northwind)
	w.lone = createOrg(h, testKey, "Lone", "lone", "")
	w.rita = createUser(h, "rita@northwind.example")
	w.gary = createUser(h, "gary@globex.example")
	w.ivan = createUser(h, "ivan@initech.example")
	putMember(h, testKey, w.northwind, w.rita, "admin")
	putMember(h, testKey, w.globex, w.gary, "admin")
	putMember(h, testKey, w.initech, w.ivan, "admin")
	w.garyToken = h.token(w.gary, w.globex)
	// documents of each tenant, as the demo app writes them
	h.write(
		rel("document:initech-plan", "org", "organization:"+w.initech),
		rel("document:globex-plan", "org", "organization:"+w.globex),
		rel("document:globex-eu-plan", "org", "organization:"+w.globexEU),
	)
	return w
}

// impersonate starts an impersonation as c (no approval required) and
// returns its id.
func impersonate(c caller, actor, target, org string, scopes ...string) string {
	c.h.t.Helper()
	body := map[string]any{"target": "user:" + target, "organization": org, "reason": "ticket 13", "scopes": scopes}
	if actor != "" {
		body["actor"] = "user:" + actor
	}
	im := c.do(201, "POST", "/v1/impersonations", body)
	if im["status"] != "active" {
		c.h.t.Fatalf("impersonation %v, want it active", im)
	}
	return str(im, "id")
}

// impersonationToken mints the token of impersonation id as c.
func impersonationToken(c caller, id string) string {
	c.h.t.Helper()
	return str(c.do(201, "POST", "/v1/impersonations/"+id+"/token", nil), "accessToken")
}
