package api_test

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/crewjam/saml"
)

// redirectToIdP follows the sign-in's redirects without following the last
// one: it returns the IdP's URL carrying the AuthnRequest.
func (w *samlWorld) redirectToIdP(b *browser) *url.URL {
	w.h.t.Helper()
	_, challenge := pkce()
	c := *b.client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	next := w.app.authorizeURL("st", challenge, url.Values{"organization": {"umbrella"}})
	for range 5 {
		resp, err := c.Get(next)
		if err != nil {
			w.h.t.Fatal(err)
		}
		resp.Body.Close()
		loc, err := resp.Location()
		if err != nil {
			w.h.t.Fatalf("GET %s: %d without a redirect", next, resp.StatusCode)
		}
		if strings.HasPrefix(loc.String(), w.sidp.URL) {
			return loc
		}
		next = loc.String()
	}
	w.h.t.Fatal("no redirect to the IdP")
	return nil
}

// TestSSOSAMLSignedAuthnRequests: the SP signs its AuthnRequests and says so
// in its metadata (AuthnRequestsSigned, its signing certificate); an IdP
// that wants signed requests (crewjam's, verifying with the certificate of
// the SP metadata) accepts them and refuses a tampered or unsigned one.
func TestSSOSAMLSignedAuthnRequests(t *testing.T) {
	w := newSAMLWorld(t)
	w.sidp.IdP.WantAuthnRequestsSigned = true
	w.sidp.SetSession(w.user("ada@umbrella.example", "admins"), nil)

	resp, err := http.Get(w.h.url + "/sso/saml/" + w.conn + "/metadata")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var md saml.EntityDescriptor
	if err := xml.Unmarshal(raw, &md); err != nil || len(md.SPSSODescriptors) != 1 {
		t.Fatalf("SP metadata: %v %.300s", err, raw)
	}
	sp := md.SPSSODescriptors[0]
	if sp.AuthnRequestsSigned == nil || !*sp.AuthnRequestsSigned {
		t.Fatalf("SP metadata does not say AuthnRequestsSigned: %.600s", raw)
	}
	var cert *x509.Certificate
	for _, kd := range sp.KeyDescriptors {
		if kd.Use == "signing" && len(kd.KeyInfo.X509Data.X509Certificates) > 0 {
			der, _ := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(kd.KeyInfo.X509Data.X509Certificates[0].Data), ""))
			cert, _ = x509.ParseCertificate(der)
		}
	}
	if cert == nil {
		t.Fatalf("SP metadata has no signing certificate: %.600s", raw)
	}

	if w.sidp.LastError() != nil {
		t.Fatalf("the IdP refused before: %v", w.sidp.LastError())
	}
	// the signed request signs the user in (the IdP verifies it)
	b := newBrowser(t)
	verifier, challenge := pkce()
	u, status, body := b.get(w.app.authorizeURL("st", challenge, url.Values{"organization": {"umbrella"}}))
	if status != 200 || !strings.HasPrefix(u.String(), w.sidp.URL) {
		t.Fatalf("to the IdP: ended at %s %d", u, status)
	}
	if q := u.Query(); q.Get("SigAlg") != "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256" || q.Get("Signature") == "" {
		t.Fatalf("the AuthnRequest is not signed: %v", q)
	}
	action, form := samlForm(t, body)
	u, status, body = b.post(action, form)
	if status != 200 || !strings.HasPrefix(u.String(), w.app.redirect) {
		t.Fatalf("ACS: ended at %s %d %q", u, status, pageCode(body))
	}
	if status, tok := w.exchange(w.app.last().Get("code"), verifier); status != 200 {
		t.Fatalf("exchange: %d %v", status, tok)
	}

	// the IdP refuses a request whose signature does not cover it, or that has none
	loc := w.redirectToIdP(newBrowser(t))
	q := loc.Query()
	q.Set("RelayState", q.Get("RelayState")+"x")
	loc.RawQuery = q.Encode()
	if status, err := idpStatus(t, loc), w.sidp.LastError(); status == 200 || !errors.Is(err, saml.ErrInvalidSignature) {
		t.Fatalf("tampered AuthnRequest: %d (%v), want the IdP to refuse its signature", status, err)
	}
	loc = w.redirectToIdP(newBrowser(t))
	q = loc.Query()
	q.Del("Signature")
	q.Del("SigAlg")
	loc.RawQuery = q.Encode()
	if status, err := idpStatus(t, loc), w.sidp.LastError(); status == 200 || !errors.Is(err, saml.ErrInvalidSignature) {
		t.Fatalf("unsigned AuthnRequest: %d (%v), want the IdP to refuse it unsigned", status, err)
	}
}

// idpStatus is the IdP's status for a request, without following redirects.
func idpStatus(t *testing.T, u *url.URL) int {
	t.Helper()
	c := http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(u.String())
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
