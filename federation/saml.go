package federation

import (
	"encoding/base64"
	"encoding/xml"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/crewjam/saml"
	"github.com/labstack/echo/v4"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/trellis-iam/trellis/store"
)

// maxSAMLForm bounds a POST to the assertion consumer service.
const maxSAMLForm = 256 << 10

// samlSP is Trellis as the SAML service provider of one connection
// (crewjam/saml): its entity id is its metadata URL, its ACS the
// connection's; the IdP is the connection's metadata. Responses must answer
// a request Trellis made (no IdP-initiated sign-in), be addressed to this SP
// (audience, recipient, destination), be in time, never seen before, free of
// XML comments, with the assertion itself signed by a certificate of the
// IdP's metadata (SHA-1 refused). Its AuthnRequests are signed with the
// connection's own key (saml_signing.go).
func (s *Service) samlSP(c store.Connection) (*saml.ServiceProvider, error) {
	ed, err := parseIdPMetadata(c.MetadataXML)
	if err != nil {
		return nil, err
	}
	acs, err := url.Parse(s.cfg.Issuer + "/sso/saml/" + c.ID + "/acs")
	if err != nil {
		return nil, err
	}
	md, err := url.Parse(s.cfg.Issuer + "/sso/saml/" + c.ID + "/metadata")
	if err != nil {
		return nil, err
	}
	k, err := s.spKey(c) // saml_signing.go
	if err != nil {
		return nil, err
	}
	return &saml.ServiceProvider{
		EntityID: md.String(), MetadataURL: *md, AcsURL: *acs, IDPMetadata: ed,
		Clock:                dsig.NewFakeClockAt(s.cfg.Now()), // the service's clock, read once per request
		ReplayCache:          s.replay,
		RejectSHA1Signatures: true,
		HTTPClient:           s.cfg.HTTPClient,
		// AuthnRequests are signed; the metadata says AuthnRequestsSigned="true"
		Key: k.key, Certificate: k.cert, SignatureMethod: dsig.ECDSASHA256SignatureMethod,
	}, nil
}

// replayCache remembers accepted assertion ids until they expire.
type replayCache struct {
	mu   sync.Mutex
	now  func() time.Time
	seen map[string]time.Time
}

func newReplayCache(now func() time.Time) *replayCache {
	return &replayCache{now: now, seen: map[string]time.Time{}}
}

func (r *replayCache) Consume(id string, expiresAt time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	for k, exp := range r.seen {
		if now.After(exp) {
			delete(r.seen, k)
		}
	}
	if _, ok := r.seen[id]; ok {
		return saml.ErrAssertionReplayed
	}
	r.seen[id] = expiresAt
	return nil
}

// samlRedirect starts a SAML sign-in: an AuthnRequest by HTTP-Redirect,
// answered by HTTP-POST at the connection's ACS.
func (s *Service) samlRedirect(c echo.Context, conn store.Connection, org, authRequest, testBy string) error {
	ctx := c.Request().Context()
	conn = s.refreshIfStale(ctx, conn) // metadata by URL older than MetadataRefresh (saml_metadata.go)
	sp, err := s.samlSP(conn)
	if err != nil {
		s.refused(ctx, conn, org, "idp_unavailable")
		return s.page(c, http.StatusBadGateway, "idp_unavailable", "Your organization's identity provider is misconfigured.")
	}
	req, err := sp.MakeAuthenticationRequest(sp.GetSSOBindingLocation(saml.HTTPRedirectBinding), saml.HTTPRedirectBinding, saml.HTTPPostBinding)
	if err != nil {
		s.refused(ctx, conn, org, "idp_unavailable")
		return s.page(c, http.StatusBadGateway, "idp_unavailable", "Your organization's identity provider has no redirect sign-in endpoint.")
	}
	state, browser := newSecret(), newSecret()
	u, err := req.Redirect(state, sp)
	if err != nil {
		return err
	}
	if err := s.putPending(ctx, pendingSignIn, state, &pendingLogin{AuthRequest: authRequest, Org: org, Connection: conn.ID, Nonce: req.ID,
		Browser: sha256Sum32(browser), CreatedAt: s.cfg.Now(), TestBy: testBy}); err != nil {
		return err
	}
	s.setBrowserCookie(c, browser)
	return c.Redirect(http.StatusFound, u.String())
}

// samlACS is the assertion consumer service of a connection.
func (s *Service) samlACS(c echo.Context) error {
	ctx := c.Request().Context()
	var conn store.Connection
	err := s.store.Read(ctx, func(tx store.Tx) (err error) {
		conn, err = tx.GetConnection(ctx, c.Param("connection"))
		return err
	})
	if err != nil || conn.Type != store.ConnectionSAML {
		return s.page(c, http.StatusNotFound, "unknown_connection", "There is no such sign-in connection.")
	}
	r := c.Request()
	r.Body = http.MaxBytesReader(c.Response(), r.Body, maxSAMLForm)
	if err := r.ParseForm(); err != nil {
		s.refused(ctx, conn, conn.Org, "request_too_large")
		return s.page(c, http.StatusRequestEntityTooLarge, "request_too_large", "The identity provider's answer is too large.")
	}
	p, bad := s.claimPending(c, r.PostForm.Get("RelayState"))
	if p == nil {
		// IdP-initiated, unsolicited or replayed: Trellis only accepts answers to its own requests
		s.refused(ctx, conn, conn.Org, "unsolicited_response")
		return s.page(c, http.StatusForbidden, "unsolicited_response", "Sign-in must start from the application.")
	}
	if p.Connection != conn.ID {
		s.refused(ctx, conn, conn.Org, "connection_mismatch")
		return s.page(c, http.StatusForbidden, "connection_mismatch", "The answer came to the wrong connection.")
	}
	_, org, err := s.loadConnection(ctx, p)
	if err != nil {
		return s.page(c, http.StatusBadRequest, "unknown_connection", "This sign-in's connection no longer exists.")
	}
	if bad != "" {
		s.refused(ctx, conn, p.Org, bad)
		return s.page(c, http.StatusBadRequest, bad, "This sign-in was started in another browser.")
	}
	raw, err := base64.StdEncoding.DecodeString(r.PostForm.Get("SAMLResponse"))
	if err != nil || len(raw) == 0 {
		s.refused(ctx, conn, p.Org, "invalid_assertion")
		return s.page(c, http.StatusBadRequest, "invalid_assertion", "The identity provider's answer is malformed.")
	}
	if strings.Contains(string(raw), "<!--") {
		// a comment can split a signed NameID for parsers that read one text node
		s.refused(ctx, conn, p.Org, "xml_comment")
		return s.page(c, http.StatusForbidden, "xml_comment", "The identity provider's answer could not be verified.")
	}
	sp, err := s.samlSP(conn)
	if err != nil {
		s.refused(ctx, conn, p.Org, "idp_unavailable")
		return s.page(c, http.StatusBadGateway, "idp_unavailable", "Your organization's identity provider is misconfigured.")
	}
	a, err := sp.ParseXMLResponse(raw, []string{p.Nonce}, sp.AcsURL)
	if err != nil {
		detail := err.Error()
		var ire *saml.InvalidResponseError
		if errors.As(err, &ire) && ire.PrivateErr != nil {
			detail = ire.PrivateErr.Error()
		}
		s.refusedWith(ctx, conn, p.Org, "invalid_assertion", detail)
		return s.page(c, http.StatusForbidden, "invalid_assertion", "The identity provider's answer could not be verified.")
	}
	if a.Signature == nil {
		s.refused(ctx, conn, p.Org, "assertion_unsigned")
		return s.page(c, http.StatusForbidden, "assertion_unsigned", "The identity provider's assertion is not signed.")
	}
	return s.finish(c, p, conn, org, samlIdentity(a), "saml")
}

// samlIdentity reads who signed in: the NameID is the subject; email from
// the email attributes (or an email-format NameID); every attribute is a
// claim for roleMapping. SAML asserts no email verification unless an
// email_verified attribute says "true".
func samlIdentity(a *saml.Assertion) Identity {
	id := Identity{Claims: map[string]any{}}
	if a.Subject != nil && a.Subject.NameID != nil {
		id.Subject = a.Subject.NameID.Value
		if a.Subject.NameID.Format == string(saml.EmailAddressNameIDFormat) {
			id.Email = a.Subject.NameID.Value
		}
	}
	for _, st := range a.AttributeStatements {
		for _, at := range st.Attributes {
			var vals []any
			for _, v := range at.Values {
				vals = append(vals, v.Value)
			}
			for _, name := range []string{at.Name, at.FriendlyName} {
				if name != "" {
					id.Claims[name] = vals
				}
			}
			if len(vals) == 0 {
				continue
			}
			first, _ := vals[0].(string)
			switch at.Name {
			case "email", "mail", "urn:oid:0.9.2342.19200300.100.1.3":
				id.Email = first
			case "email_verified":
				id.EmailVerified = first == "true"
			case "name", "cn", "urn:oid:2.5.4.3", "displayName":
				id.Name = first
			}
		}
	}
	for _, st := range a.AuthnStatements {
		if st.AuthnContext.AuthnContextClassRef != nil {
			id.ACR = st.AuthnContext.AuthnContextClassRef.Value
		}
	}
	return id
}

// samlMetadata is GET /sso/saml/{connection}/metadata: this SP's metadata,
// for the customer to register at its IdP.
func (s *Service) samlMetadata(c echo.Context) error {
	ctx := c.Request().Context()
	var conn store.Connection
	err := s.store.Read(ctx, func(tx store.Tx) (err error) {
		conn, err = tx.GetConnection(ctx, c.Param("connection"))
		return err
	})
	if err != nil || conn.Type != store.ConnectionSAML {
		return notFound("connection", c.Param("connection"))
	}
	sp, err := s.samlSP(conn)
	if err != nil {
		return err
	}
	b, err := xml.MarshalIndent(sp.Metadata(), "", "  ")
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, "application/samlmetadata+xml", b)
}
