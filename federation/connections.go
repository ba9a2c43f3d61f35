package federation

import (
	"context"
	"encoding/xml"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/crewjam/saml"

	trellis "github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/store"
)

const (
	permManageSSO   = "manage_sso"
	maxMetadataXML  = 256 << 10
	maxRoleRules    = 100
	maxFieldLength  = 1024
	connectionIDTag = "con"
)

// ConnectionInput is the body of POST and PATCH …/connections. On PATCH,
// absent fields keep their values; type never changes.
type ConnectionInput struct {
	Type                      string           `json:"type"`
	Name                      *string          `json:"name"`
	Issuer                    *string          `json:"issuer"`
	ClientID                  *string          `json:"clientId"`
	ClientSecret              *string          `json:"clientSecret"`
	MetadataXML               *string          `json:"metadataXml"`
	MetadataURL               *string          `json:"metadataUrl"`
	RoleMapping               []store.RoleRule `json:"roleMapping"`
	JIT                       *bool            `json:"jit"`
	Enabled                   *bool            `json:"enabled"`
	ShareWithSubOrganizations *bool            `json:"shareWithSubOrganizations"`
	RecreateRemovedMembers    *bool            `json:"recreateRemovedMembers"`
}

// Connection is a connection as clients see it: never its secret.
type Connection struct {
	ID              string `json:"id"`
	Organization    string `json:"organization"`
	Type            string `json:"type"`
	Name            string `json:"name"`
	Issuer          string `json:"issuer,omitempty"`
	ClientID        string `json:"clientId,omitempty"`
	HasClientSecret bool   `json:"hasClientSecret,omitempty"`
	IdPEntityID     string `json:"idpEntityId,omitempty"`
	// MetadataURL (saml) is where the IdP's metadata is fetched from;
	// MetadataFetchedAt its last successful fetch; MetadataError the last
	// failed refresh's reason (the previous metadata is kept).
	MetadataURL               string           `json:"metadataUrl,omitempty"`
	MetadataFetchedAt         *time.Time       `json:"metadataFetchedAt,omitempty"`
	MetadataError             string           `json:"metadataError,omitempty"`
	RoleMapping               []store.RoleRule `json:"roleMapping"`
	JIT                       bool             `json:"jit"`
	Enabled                   bool             `json:"enabled"`
	ShareWithSubOrganizations bool             `json:"shareWithSubOrganizations"`
	RecreateRemovedMembers    bool             `json:"recreateRemovedMembers"`
	// RedirectURI (oidc) is what the customer registers at its IdP; ACSURL
	// and SPMetadataURL (saml) likewise.
	RedirectURI   string    `json:"redirectUri,omitempty"`
	ACSURL        string    `json:"acsUrl,omitempty"`
	SPMetadataURL string    `json:"spMetadataUrl,omitempty"`
	CreatedBy     string    `json:"createdBy"`
	CreatedAt     time.Time `json:"createdAt"`
	UpdatedAt     time.Time `json:"updatedAt"`
}

func (s *Service) connectionView(c store.Connection) Connection {
	v := Connection{ID: c.ID, Organization: c.Org, Type: c.Type, Name: c.Name, Issuer: c.Issuer, ClientID: c.ClientID,
		HasClientSecret: len(c.SealedSecret) > 0, RoleMapping: c.RoleMapping, JIT: c.JIT, Enabled: c.Enabled,
		ShareWithSubOrganizations: c.ShareWithSubOrgs, RecreateRemovedMembers: c.RecreateRemoved,
		CreatedBy: c.CreatedBy, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
	if v.RoleMapping == nil {
		v.RoleMapping = []store.RoleRule{}
	}
	switch c.Type {
	case store.ConnectionOIDC:
		v.RedirectURI = s.cfg.Issuer + "/sso/oidc/callback"
	case store.ConnectionSAML:
		v.ACSURL = s.cfg.Issuer + "/sso/saml/" + c.ID + "/acs"
		v.SPMetadataURL = s.cfg.Issuer + "/sso/saml/" + c.ID + "/metadata"
		if ed, err := parseIdPMetadata(c.MetadataXML); err == nil {
			v.IdPEntityID = ed.EntityID
		}
		v.MetadataURL, v.MetadataFetchedAt, v.MetadataError = c.MetadataURL, c.MetadataFetchedAt, c.MetadataError
	}
	return v
}

// secretAAD binds a sealed client secret to its connection.
func secretAAD(id string) []byte { return []byte("trellis/connection/" + id + "/client_secret") }

// apply validates in onto c (a new or existing connection).
func (s *Service) apply(c *store.Connection, in ConnectionInput, creating bool) error {
	if creating {
		switch in.Type {
		case store.ConnectionOIDC, store.ConnectionSAML:
			c.Type = in.Type
		case "":
			return trellis.Invalid("type", "is required (oidc or saml)")
		default:
			return trellis.Invalid("type", "must be oidc or saml, got %q", in.Type)
		}
	} else if in.Type != "" && in.Type != c.Type {
		return trellis.Invalid("type", "cannot change (%s); create another connection", c.Type)
	}
	if in.Name != nil {
		name := strings.TrimSpace(*in.Name)
		if len(name) > 200 {
			return trellis.Invalid("name", "must be at most 200 characters")
		}
		c.Name = name
	}
	if c.Name == "" {
		c.Name = strings.ToUpper(c.Type)
	}
	switch c.Type {
	case store.ConnectionOIDC:
		if in.MetadataXML != nil {
			return trellis.Invalid("metadataXml", "is for saml connections")
		}
		if in.MetadataURL != nil {
			return trellis.Invalid("metadataUrl", "is for saml connections")
		}
		if in.Issuer != nil {
			iss, err := validIssuer(*in.Issuer)
			if err != nil {
				return err
			}
			c.Issuer = iss
		}
		if in.ClientID != nil {
			id := strings.TrimSpace(*in.ClientID)
			if id == "" || len(id) > maxFieldLength {
				return trellis.Invalid("clientId", "must be 1-%d characters", maxFieldLength)
			}
			c.ClientID = id
		}
		if in.ClientSecret != nil {
			if *in.ClientSecret == "" || len(*in.ClientSecret) > maxFieldLength {
				return trellis.Invalid("clientSecret", "must be 1-%d characters", maxFieldLength)
			}
			c.SealedSecret = s.sealer.Seal([]byte(*in.ClientSecret), secretAAD(c.ID))
		}
		switch {
		case c.Issuer == "":
			return trellis.Invalid("issuer", "is required for oidc connections")
		case c.ClientID == "":
			return trellis.Invalid("clientId", "is required for oidc connections")
		case len(c.SealedSecret) == 0:
			return trellis.Invalid("clientSecret", "is required for oidc connections")
		}
	case store.ConnectionSAML:
		if in.Issuer != nil || in.ClientID != nil || in.ClientSecret != nil {
			return trellis.Invalid("issuer", "issuer, clientId and clientSecret are for oidc connections")
		}
		if in.MetadataXML != nil {
			if _, err := parseIdPMetadata(*in.MetadataXML); err != nil {
				return err
			}
			c.MetadataXML = *in.MetadataXML
			if in.MetadataURL == nil { // pasted metadata: no longer fetched
				in.MetadataURL = new(string)
			}
		}
		if in.MetadataURL != nil { // prefetch fetched it into MetadataXML
			c.MetadataURL, c.MetadataFetchedAt, c.MetadataError = *in.MetadataURL, nil, ""
			if c.MetadataURL != "" {
				now := s.cfg.Now().UTC()
				c.MetadataFetchedAt = &now
			}
		}
		if c.MetadataXML == "" {
			return trellis.Invalid("metadataXml", "is required for saml connections")
		}
	}
	if in.RoleMapping != nil {
		if len(in.RoleMapping) > maxRoleRules {
			return trellis.Invalid("roleMapping", "at most %d rules", maxRoleRules)
		}
		for i, r := range in.RoleMapping {
			if strings.TrimSpace(r.Claim) == "" || len(r.Claim) > 200 {
				return trellis.Invalid("roleMapping["+strconv.Itoa(i)+"].claim", "must be 1-200 characters")
			}
			if len(r.Value) > maxFieldLength {
				return trellis.Invalid("roleMapping["+strconv.Itoa(i)+"].value", "must be at most %d characters", maxFieldLength)
			}
			if len(r.Roles) == 0 || len(r.Roles) > 50 {
				return trellis.Invalid("roleMapping["+strconv.Itoa(i)+"].roles", "must list 1-50 roles")
			}
			for _, role := range r.Roles {
				if role == "" || len(role) > 100 {
					return trellis.Invalid("roleMapping["+strconv.Itoa(i)+"].roles", "must be role keys of 1-100 characters")
				}
			}
		}
		c.RoleMapping = in.RoleMapping
	}
	if in.JIT != nil {
		c.JIT = *in.JIT
	}
	if in.Enabled != nil {
		c.Enabled = *in.Enabled
	}
	if in.ShareWithSubOrganizations != nil {
		c.ShareWithSubOrgs = *in.ShareWithSubOrganizations
	}
	if in.RecreateRemovedMembers != nil {
		c.RecreateRemoved = *in.RecreateRemovedMembers
	}
	return nil
}

// validIssuer: an absolute https URL (http only on loopback, for local IdPs)
// without query, fragment or user info.
func validIssuer(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || len(raw) > maxFieldLength {
		return "", trellis.Invalid("issuer", "must be an absolute https URL")
	}
	switch u.Scheme {
	case "https":
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return "", trellis.Invalid("issuer", "must be https (http only on loopback)")
		}
	default:
		return "", trellis.Invalid("issuer", "must be an absolute https URL")
	}
	return raw, nil
}

// parseIdPMetadata reads a SAML IdP's metadata: an EntityDescriptor with an
// IDPSSODescriptor that has a signing certificate and an SSO service.
func parseIdPMetadata(raw string) (*saml.EntityDescriptor, error) {
	if len(raw) > maxMetadataXML {
		return nil, trellis.Invalid("metadataXml", "must be at most %d bytes", maxMetadataXML)
	}
	var ed saml.EntityDescriptor
	if err := xml.Unmarshal([]byte(raw), &ed); err != nil {
		return nil, trellis.Invalid("metadataXml", "is not SAML metadata: %v", err)
	}
	if ed.EntityID == "" || len(ed.IDPSSODescriptors) == 0 {
		return nil, trellis.Invalid("metadataXml", "must describe an IdP (EntityDescriptor with an IDPSSODescriptor)")
	}
	idp := ed.IDPSSODescriptors[0]
	if len(idp.SingleSignOnServices) == 0 {
		return nil, trellis.Invalid("metadataXml", "the IdP has no SingleSignOnService")
	}
	hasCert := false
	for _, kd := range idp.KeyDescriptors {
		if (kd.Use == "" || kd.Use == "signing") && len(kd.KeyInfo.X509Data.X509Certificates) > 0 {
			hasCert = true
		}
	}
	if !hasCert {
		return nil, trellis.Invalid("metadataXml", "the IdP publishes no signing certificate")
	}
	return &ed, nil
}

// CreateConnection adds a connection to org; the caller needs manage_sso.
func (s *Service) CreateConnection(ctx context.Context, p directory.Principal, org string, in ConnectionInput) (Connection, error) {
	var out Connection
	if err := s.prefetch(ctx, p, org, "", &in); err != nil { // saml_metadata.go
		return out, err
	}
	err := s.dir.AdministerOrg(ctx, p, org, permManageSSO, "connection.create", func(tx store.Tx, o store.Org, rec directory.Recorder) error {
		now := s.cfg.Now().UTC()
		c := store.Connection{ID: newID(connectionIDTag), Org: o.ID, JIT: true, Enabled: true, CreatedBy: p.Actor(), CreatedAt: now, UpdatedAt: now,
			ConfiguredBy: p.Actor(), ConfiguredKey: p.KeyID, ConfiguredLimit: slices.Clone(p.Permissions)}
		if err := s.apply(&c, in, true); err != nil {
			return err
		}
		if err := s.grantable(ctx, tx, p, o, c); err != nil {
			return err
		}
		if err := tx.InsertConnection(ctx, c); err != nil {
			return err
		}
		rec(o.ID, "connection.create", "connection:"+c.ID, map[string]any{"type": c.Type, "enabled": c.Enabled, "jit": c.JIT})
		out = s.connectionView(c)
		return nil
	})
	return out, err
}

// grantable refuses a role mapping its configurer could not grant: saving a
// connection makes the caller the authority its sign-ins are weighed against
// (directory.SSOSignIn), so a mapping beyond the caller's grant would only
// fail at sign-in — it is refused here, naming the rule.
func (s *Service) grantable(ctx context.Context, tx store.Tx, p directory.Principal, o store.Org, c store.Connection) error {
	for i, r := range c.RoleMapping {
		if err := s.dir.CheckRoleGrant(ctx, tx, p, o, r.Roles, "roleMapping["+strconv.Itoa(i)+"].roles"); err != nil {
			return err
		}
	}
	return nil
}

// connectionOf loads connection id of org; another org's connection is not found.
func connectionOf(ctx context.Context, tx store.Tx, org store.Org, id string) (store.Connection, error) {
	c, err := tx.GetConnection(ctx, id)
	if err != nil || c.Org != org.ID {
		return store.Connection{}, notFound("connection", id)
	}
	return c, nil
}

// ListConnections lists org's connections.
func (s *Service) ListConnections(ctx context.Context, p directory.Principal, org string) ([]Connection, error) {
	out := []Connection{}
	err := s.dir.ReadOrg(ctx, p, org, permManageSSO, func(tx store.Tx, o store.Org) error {
		cs, err := tx.ListConnections(ctx, o.ID)
		for _, c := range cs {
			out = append(out, s.connectionView(c))
		}
		return err
	})
	return out, err
}

// GetConnection returns one connection of org.
func (s *Service) GetConnection(ctx context.Context, p directory.Principal, org, id string) (Connection, error) {
	var out Connection
	err := s.dir.ReadOrg(ctx, p, org, permManageSSO, func(tx store.Tx, o store.Org) error {
		c, err := connectionOf(ctx, tx, o, id)
		out = s.connectionView(c)
		return err
	})
	return out, err
}

// UpdateConnection changes a connection of org.
func (s *Service) UpdateConnection(ctx context.Context, p directory.Principal, org, id string, in ConnectionInput) (Connection, error) {
	var out Connection
	if err := s.prefetch(ctx, p, org, id, &in); err != nil { // saml_metadata.go
		return out, err
	}
	err := s.dir.AdministerOrg(ctx, p, org, permManageSSO, "connection.update", func(tx store.Tx, o store.Org, rec directory.Recorder) error {
		c, err := connectionOf(ctx, tx, o, id)
		if err != nil {
			return err
		}
		if err := s.apply(&c, in, false); err != nil {
			return err
		}
		if err := s.grantable(ctx, tx, p, o, c); err != nil {
			return err
		}
		// what sign-ins grant from now on is this caller's grant
		c.UpdatedAt, c.ConfiguredBy, c.ConfiguredKey, c.ConfiguredLimit = s.cfg.Now().UTC(), p.Actor(), p.KeyID, slices.Clone(p.Permissions)
		if err := tx.UpdateConnection(ctx, c); err != nil {
			return err
		}
		details := map[string]any{"enabled": c.Enabled, "jit": c.JIT}
		if in.ClientSecret != nil {
			details["clientSecret"] = "replaced"
		}
		rec(o.ID, "connection.update", "connection:"+c.ID, details)
		out = s.connectionView(c)
		return nil
	})
	return out, err
}

// DeleteConnection removes a connection of org and its identity links.
func (s *Service) DeleteConnection(ctx context.Context, p directory.Principal, org, id string) error {
	return s.dir.AdministerOrg(ctx, p, org, permManageSSO, "connection.delete", func(tx store.Tx, o store.Org, rec directory.Recorder) error {
		if _, err := connectionOf(ctx, tx, o, id); err != nil {
			return err
		}
		if err := tx.DeleteConnection(ctx, id); err != nil {
			return err
		}
		rec(o.ID, "connection.delete", "connection:"+id, nil)
		return nil
	})
}

// ConnectionTest is the answer of POST …/connections/{id}/test: open URL in
// a browser to run a sign-in at the IdP that creates nothing; its result
// (subject, email, mapped roles, claims) is shown at the end.
type ConnectionTest struct {
	URL string `json:"url"`
}

// TestConnection starts a test sign-in through connection id of org.
func (s *Service) TestConnection(ctx context.Context, p directory.Principal, org, id string) (ConnectionTest, error) {
	var conn store.Connection
	err := s.dir.ReadOrg(ctx, p, org, permManageSSO, func(tx store.Tx, o store.Org) (err error) {
		conn, err = connectionOf(ctx, tx, o, id)
		return err
	})
	if err != nil {
		return ConnectionTest{}, err
	}
	ticket := newSecret()
	if err := s.putPending(ctx, pendingTest, ticket, &pendingLogin{Connection: conn.ID, Org: conn.Org, TestBy: p.Actor(), CreatedAt: s.cfg.Now()}); err != nil {
		return ConnectionTest{}, err
	}
	return ConnectionTest{URL: s.cfg.Issuer + "/sso/test?ticket=" + ticket}, nil
}
