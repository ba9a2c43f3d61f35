package api_test

import (
	"encoding/base64"
	"html"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"
	"github.com/crewjam/saml"

	"github.com/trellis-iam/trellis/federation/idptest"
)

var (
	formAction = regexp.MustCompile(`<form[^>]*action="([^"]*)"`)
	formInput  = regexp.MustCompile(`<input[^>]*name="([^"]*)"[^>]*value="([^"]*)"`)
)

// samlForm reads the IdP's auto-posting form: its SAMLResponse and RelayState.
func samlForm(t testing.TB, body string) (action string, values url.Values) {
	t.Helper()
	m := formAction.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no form in the IdP's answer: %.500s", body)
	}
	values = url.Values{}
	for _, in := range formInput.FindAllStringSubmatch(body, -1) {
		values.Set(html.UnescapeString(in[1]), html.UnescapeString(in[2]))
	}
	if values.Get("SAMLResponse") == "" {
		t.Fatalf("no SAMLResponse in the IdP's form: %.500s", body)
	}
	return html.UnescapeString(m[1]), values
}

type samlWorld struct {
	*ssoWorld
	sidp *idptest.SAML
	acs  string
}

func newSAMLWorld(t *testing.T) *samlWorld {
	h := newSSOHarness(t)
	sidp := idptest.NewSAML()
	t.Cleanup(sidp.Close)
	w := &samlWorld{ssoWorld: &ssoWorld{h: h, org: createOrg(h, testKey, "Umbrella", "umbrella", "")}, sidp: sidp}
	p := h.provider()
	out := p.do(201, "POST", "/v1/organizations/umbrella/connections", map[string]any{
		"type": "saml", "metadataXml": sidp.MetadataXML(),
		"roleMapping": []map[string]any{{"claim": "eduPersonAffiliation", "value": "admins", "roles": []string{"admin"}}},
	})
	w.conn = str(out, "id")
	w.acs = str(out, "acsUrl")
	sidp.SetSP(str(out, "spMetadataUrl"))
	w.app = registerApp(h)
	return w
}

func (w *samlWorld) user(email string, groups ...string) saml.Session {
	return saml.Session{NameID: email, NameIDFormat: string(saml.EmailAddressNameIDFormat), UserEmail: email, Groups: groups}
}

// toIdP runs the flow up to the IdP's form (the browser has not posted it yet).
func (w *samlWorld) toIdP(b *browser) (string, url.Values) {
	w.h.t.Helper()
	_, challenge := pkce()
	u, status, body := b.get(w.app.authorizeURL("st", challenge, url.Values{"organization": {"umbrella"}}))
	if status != 200 || !strings.HasPrefix(u.String(), w.sidp.URL) {
		w.h.t.Fatalf("SAML sign-in: ended at %s %d (%s), want the IdP's form", u, status, pageCode(body))
	}
	return samlForm(w.h.t, body)
}

// TestSSOSAMLSignIn: an app signs a user in through the organization's SAML
// IdP (crewjam's IdP in process, keys made at test time).
func TestSSOSAMLSignIn(t *testing.T) {
	w := newSAMLWorld(t)
	w.sidp.SetSession(w.user("ada@umbrella.example", "admins"), nil)
	b := newBrowser(t)
	verifier, challenge := pkce()
	_, status, body := b.get(w.app.authorizeURL("st", challenge, url.Values{"organization": {"umbrella"}}))
	if status != 200 {
		t.Fatalf("to the IdP: %d", status)
	}
	action, form := samlForm(t, body)
	if action != w.acs {
		t.Fatalf("the IdP posts to %s, want the connection's ACS %s", action, w.acs)
	}
	u, status, body := b.post(action, form)
	if status != 200 || !strings.HasPrefix(u.String(), w.app.redirect) {
		t.Fatalf("ACS: ended at %s %d %q", u, status, pageCode(body))
	}
	status, tok := w.exchange(w.app.last().Get("code"), verifier)
	if status != 200 {
		t.Fatalf("exchange: %d %v", status, tok)
	}
	id := w.app.verifyIDToken(str(tok, "id_token"))
	if id["org"] != w.org || id["email"] != "ada@umbrella.example" || !slices.Contains(strs(id["org_roles"]), "admin") {
		t.Fatalf("id_token %v: want org umbrella, ada's email, role admin", id)
	}
	m := w.h.provider().do(200, "GET", "/v1/organizations/umbrella/members/"+str(id, "sub"), nil)
	if m["authenticatedVia"] != "sso:"+w.conn {
		t.Fatalf("membership %v", m)
	}
	// the replayed response is refused
	if _, status, body := b.post(action, form); status != 403 || pageCode(body) != "unsolicited_response" {
		t.Fatalf("replayed response: %d %q, want 403 unsolicited_response", status, pageCode(body))
	}
}

// edit mutates a signed response's XML without re-signing it.
func edit(t testing.TB, resp string, fn func(doc *etree.Document)) string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(resp)
	if err != nil {
		t.Fatal(err)
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(raw); err != nil {
		t.Fatal(err)
	}
	fn(doc)
	out, err := doc.WriteToBytes()
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(out)
}

// TestSSOSAMLSecurityCases: forged, misdirected, stale, replayed, unsolicited
// and oversized answers are refused, audited, and create nothing.
func TestSSOSAMLSecurityCases(t *testing.T) {
	w := newSAMLWorld(t)
	const email = "mallory@umbrella.example"
	refusedAt := func(t *testing.T, b *browser, action string, form url.Values, status int, code string) {
		t.Helper()
		before := refusals(w.h, "umbrella")
		u, got, body := b.post(action, form)
		if got != status || pageCode(body) != code {
			t.Fatalf("ended at %s with %d %q, want %d %q", u.Path, got, pageCode(body), status, code)
		}
		if refusals(w.h, "umbrella") != before+1 {
			t.Fatal("the refusal was not audited")
		}
		if out := w.h.provider().do(200, "GET", "/v1/users?email="+url.QueryEscape(email), nil); len(out["users"].([]any)) != 0 {
			t.Fatal("a refused sign-in created a user")
		}
	}
	mutated := []struct {
		name   string
		mutate func(req *saml.IdpAuthnRequest)
	}{
		{"wrong audience", func(r *saml.IdpAuthnRequest) {
			r.Assertion.Conditions.AudienceRestrictions[0].Audience.Value = "https://other-sp.example/metadata"
		}},
		{"wrong recipient", func(r *saml.IdpAuthnRequest) {
			r.Assertion.Subject.SubjectConfirmations[0].SubjectConfirmationData.Recipient = "https://other-sp.example/acs"
		}},
		{"wrong destination", func(r *saml.IdpAuthnRequest) {
			ep := *r.ACSEndpoint
			ep.Location = "https://other-sp.example/acs"
			r.ACSEndpoint = &ep
		}},
		{"expired conditions", func(r *saml.IdpAuthnRequest) {
			past := time.Now().Add(-time.Hour)
			r.Assertion.Conditions.NotOnOrAfter = past
			r.Assertion.Subject.SubjectConfirmations[0].SubjectConfirmationData.NotOnOrAfter = past
		}},
	}
	for _, tc := range mutated {
		t.Run(tc.name, func(t *testing.T) {
			w.sidp.SetSession(w.user(email, "admins"), tc.mutate)
			b := newBrowser(t)
			_, form := w.toIdP(b)
			refusedAt(t, b, w.acs, form, 403, "invalid_assertion")
		})
	}

	edits := []struct {
		name, code string
		fn         func(doc *etree.Document)
	}{
		{"unsigned assertion", "invalid_assertion", func(doc *etree.Document) {
			a := doc.FindElement("//Assertion")
			a.RemoveChild(a.SelectElement("Signature"))
		}},
		{"signature wrapping", "invalid_assertion", func(doc *etree.Document) {
			// the signed assertion moves into an extension; a forged copy
			// naming the victim takes its place
			resp := doc.Root()
			signed := doc.FindElement("//Assertion")
			forged := signed.Copy()
			forged.RemoveChild(forged.SelectElement("Signature"))
			forged.CreateAttr("ID", "_forged")
			forged.FindElement(".//NameID").SetText("victim@umbrella.example")
			resp.RemoveChild(signed)
			ext := resp.CreateElement("samlp:Extensions")
			ext.AddChild(signed)
			resp.AddChild(forged)
		}},
		{"comment in NameID", "xml_comment", func(doc *etree.Document) {
			n := doc.FindElement("//NameID")
			text := n.Text()
			n.SetText(text[:3])
			n.CreateComment("")
			n.CreateText(text[3:])
		}},
	}
	for _, tc := range edits {
		t.Run(tc.name, func(t *testing.T) {
			w.sidp.SetSession(w.user(email, "admins"), nil)
			b := newBrowser(t)
			_, form := w.toIdP(b)
			form.Set("SAMLResponse", edit(t, form.Get("SAMLResponse"), tc.fn))
			refusedAt(t, b, w.acs, form, 403, tc.code)
		})
	}

	t.Run("wrongly signed", func(t *testing.T) {
		w.sidp.SetSession(w.user(email, "admins"), nil)
		key, cert := w.sidp.IdP.Key, w.sidp.IdP.Certificate
		w.sidp.SignWithForeignKey()
		defer func() { w.sidp.IdP.Key, w.sidp.IdP.Certificate = key, cert }()
		b := newBrowser(t)
		_, form := w.toIdP(b)
		refusedAt(t, b, w.acs, form, 403, "invalid_assertion")
	})

	t.Run("replayed into a new sign-in", func(t *testing.T) {
		w.sidp.SetSession(w.user(email, "admins"), nil)
		b := newBrowser(t)
		_, old := w.toIdP(b)
		_, fresh := w.toIdP(b) // a new request; the old response answers the first
		fresh.Set("SAMLResponse", old.Get("SAMLResponse"))
		refusedAt(t, b, w.acs, fresh, 403, "invalid_assertion")
	})

	t.Run("IdP-initiated from an unknown IdP", func(t *testing.T) {
		rogue := idptest.NewSAML()
		defer rogue.Close()
		rogue.SetSP(strings.TrimSuffix(w.acs, "/acs") + "/metadata")
		rogue.SetSession(w.user(email, "admins"), nil)
		rec := httptest.NewRecorder()
		rogue.IdP.ServeIDPInitiated(rec, httptest.NewRequest("GET", "/", nil), strings.TrimSuffix(w.acs, "/acs")+"/metadata", "")
		_, form := samlForm(t, rec.Body.String())
		refusedAt(t, newBrowser(t), w.acs, form, 403, "unsolicited_response")
	})

	t.Run("oversized request", func(t *testing.T) {
		form := url.Values{"SAMLResponse": {strings.Repeat("A", 300<<10)}, "RelayState": {"x"}}
		refusedAt(t, newBrowser(t), w.acs, form, 413, "request_too_large")
	})
}
