package api_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellis-iam/trellis/federation/idptest"
	"github.com/trellis-iam/trellis/store"
)

// metadataHost serves an IdP's metadata, or fails as told.
type metadataHost struct {
	*httptest.Server
	mu   sync.Mutex
	mode string // "" serves the metadata; "down" 503; "huge" more than 256 KiB
}

func newMetadataHost(t *testing.T, idp *idptest.SAML) *metadataHost {
	m := &metadataHost{}
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		m.mu.Lock()
		mode := m.mode
		m.mu.Unlock()
		switch mode {
		case "down":
			http.Error(w, "down", http.StatusServiceUnavailable)
		case "huge":
			_, _ = w.Write([]byte("<EntityDescriptor>" + strings.Repeat(" ", 300<<10) + "</EntityDescriptor>"))
		default:
			_, _ = w.Write([]byte(idp.MetadataXML()))
		}
	}))
	t.Cleanup(m.Close)
	return m
}

func (m *metadataHost) set(mode string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mode = mode
}

// samlSignIn runs a whole SAML sign-in and reports whether the app got a code
// (else the refusal page's code).
func (w *samlWorld) samlSignIn() (bool, string) {
	w.h.t.Helper()
	b := newBrowser(w.h.t.(*testing.T))
	action, form := w.toIdP(b)
	u, status, body := b.post(action, form)
	if status == 200 && strings.HasPrefix(u.String(), w.app.redirect) {
		return true, ""
	}
	return false, pageCode(body)
}

// TestSSOSAMLMetadataURL: a SAML connection takes its IdP's metadata from a
// URL (https, or http on loopback; bounded; parsed), refreshed on demand and
// when a sign-in finds it stale; a failed refresh keeps the previous
// metadata, shows in the connection and is audited; bad URLs create nothing.
func TestSSOSAMLMetadataURL(t *testing.T) {
	h := newSSOHarness(t)
	sidp := idptest.NewSAML()
	t.Cleanup(sidp.Close)
	host := newMetadataHost(t, sidp)
	w := &samlWorld{ssoWorld: &ssoWorld{h: h, org: createOrg(h, testKey, "Umbrella", "umbrella", "")}, sidp: sidp}
	createOrg(h, testKey, "Globex", "globex", "")
	p := h.provider()
	base := "/v1/organizations/umbrella/connections"

	// refused, creating nothing
	for _, c := range []struct {
		name, mode string
		body       map[string]any
	}{
		{"http off loopback", "", map[string]any{"type": "saml", "metadataUrl": "http://idp.example.com/metadata"}},
		{"not a URL", "", map[string]any{"type": "saml", "metadataUrl": "metadata.xml"}},
		{"both xml and url", "", map[string]any{"type": "saml", "metadataUrl": host.URL, "metadataXml": sidp.MetadataXML()}},
		{"for oidc", "", map[string]any{"type": "oidc", "issuer": "https://idp.example.com", "clientId": "c", "clientSecret": "s", "metadataUrl": host.URL}},
		{"host down", "down", map[string]any{"type": "saml", "metadataUrl": host.URL}},
		{"too large", "huge", map[string]any{"type": "saml", "metadataUrl": host.URL}},
	} {
		host.set(c.mode)
		p.fails(400, "invalid_argument", "metadataUrl", "POST", base, c.body)
	}
	host.set("")
	if got := items(t, p.do(200, "GET", base, nil), "connections"); len(got) != 0 {
		t.Fatalf("refused connections were created: %v", got)
	}

	out := p.do(201, "POST", base, map[string]any{"type": "saml", "metadataUrl": host.URL})
	w.conn, w.acs = str(out, "id"), str(out, "acsUrl")
	if out["metadataUrl"] != host.URL || out["metadataFetchedAt"] == nil || out["idpEntityId"] != sidp.IdP.Metadata().EntityID || out["metadataError"] != nil {
		t.Fatalf("connection %v: want its URL, fetch time and the IdP's entity id", out)
	}
	sidp.SetSP(str(out, "spMetadataUrl"))
	w.app = registerApp(h)
	sidp.SetSession(w.user("ada@umbrella.example"), nil)
	if ok, code := w.samlSignIn(); !ok {
		t.Fatalf("sign-in through fetched metadata refused: %s", code)
	}
	path := base + "/" + w.conn + "/refresh-metadata"

	// a failed refresh keeps the metadata and shows
	host.set("down")
	got := p.do(200, "POST", path, nil)
	if !strings.Contains(str(got, "metadataError"), "503") || got["metadataFetchedAt"] != out["metadataFetchedAt"] {
		t.Fatalf("failed refresh: %v, want the error and the previous fetch time", got)
	}
	if ok, code := w.samlSignIn(); !ok {
		t.Fatalf("sign-in after a failed refresh refused: %s (the previous metadata must be kept)", code)
	}
	wantAudit(t, h, "umbrella", "connection.metadata.refresh")

	// the IdP rotates its key: the old metadata no longer verifies; a refresh fixes it
	host.set("")
	sidp.SignWithForeignKey()
	if ok, code := w.samlSignIn(); ok || code != "invalid_assertion" {
		t.Fatalf("sign-in signed by a key the stored metadata lacks: ok=%v %s", ok, code)
	}
	if got := p.do(200, "POST", path, nil); got["metadataError"] != nil {
		t.Fatalf("refresh: %v", got)
	}
	if ok, code := w.samlSignIn(); !ok {
		t.Fatalf("sign-in after the refresh refused: %s", code)
	}

	// stale metadata is refreshed by a sign-in; a failure keeps it, shows,
	// and is not retried at every sign-in. (The IdP checks the AuthnRequest's
	// time against its own clock: the steps away from now stop at the redirect.)
	stale := func() {
		t.Helper()
		err := h.store.InTx(t.Context(), func(tx store.Tx) error {
			c, err := tx.GetConnection(t.Context(), w.conn)
			if err != nil {
				return err
			}
			old := h.clock.Now().Add(-25 * time.Hour)
			c.MetadataFetchedAt = &old
			return tx.UpdateConnection(t.Context(), c)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	sidp.SignWithForeignKey()
	host.set("down")
	h.clock.Advance(-6 * time.Minute)
	stale()
	w.redirectToIdP(newBrowser(t))
	if got := p.do(200, "GET", base+"/"+w.conn, nil); !strings.Contains(str(got, "metadataError"), "503") {
		t.Fatalf("stale refresh failure not shown: %v", got)
	}
	host.set("")
	w.redirectToIdP(newBrowser(t))
	if got := p.do(200, "GET", base+"/"+w.conn, nil); !strings.Contains(str(got, "metadataError"), "503") {
		t.Fatalf("a failing IdP host was fetched again within the retry interval: %v", got)
	}
	h.clock.Advance(6 * time.Minute)
	if ok, code := w.samlSignIn(); !ok {
		t.Fatalf("sign-in after the stale refresh refused: %s", code)
	}
	if got := p.do(200, "GET", base+"/"+w.conn, nil); got["metadataError"] != nil {
		t.Fatalf("the successful refresh left an error: %v", got)
	}

	// another organization's connection is not found; pasted metadata has no URL to refresh
	p.fails(404, "not_found", "", "POST", "/v1/organizations/globex/connections/"+w.conn+"/refresh-metadata", nil)
	p.do(200, "PATCH", base+"/"+w.conn, map[string]any{"metadataXml": sidp.MetadataXML()})
	p.fails(409, "", "", "POST", path, nil)
}
