package store

import (
	"context"
	"time"
)

// Connection types.
const (
	ConnectionOIDC = "oidc"
	ConnectionSAML = "saml"
)

// RoleRule maps an IdP claim value to roles: a sign-in whose Claim holds Value
// (a string equal to it, or a list containing it) gets Roles.
type RoleRule struct {
	Claim string   `json:"claim"`
	Value string   `json:"value"`
	Roles []string `json:"roles"`
}

// Connection is an organization's SSO connection to its own IdP. The OIDC
// client secret is stored sealed (AES-GCM under the key-encryption key), never
// in clear.
type Connection struct {
	ID           string
	Org          string
	Type         string // oidc | saml
	Name         string
	Issuer       string // oidc
	ClientID     string // oidc
	SealedSecret []byte // oidc: the client secret, sealed
	MetadataXML  string // saml: the IdP's metadata
	// MetadataURL (saml), when set, is where MetadataXML is fetched from;
	// MetadataFetchedAt is the last successful fetch, MetadataError the last
	// failure's reason ("" after a success: a failure keeps the metadata).
	MetadataURL       string
	MetadataFetchedAt *time.Time
	MetadataError     string
	RoleMapping       []RoleRule
	JIT               bool // first sign-ins create the user and membership
	Enabled           bool
	ShareWithSubOrgs  bool // sub-organizations may sign in through it
	RecreateRemoved   bool // JIT recreates a membership an admin or SCIM removed
	CreatedBy         string
	// ConfiguredBy (an audit actor) last created or changed the connection,
	// with API key ConfiguredKey ("" for a user's token or the admin key):
	// what sign-ins grant is weighed against that authority, as limited now.
	ConfiguredBy    string
	ConfiguredKey   string
	ConfiguredLimit []string // the permission list ConfiguredBy acted with (nil: none)
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// Application is an app that signs users in through Trellis (an OIDC client).
// Only the SHA-256 of its secret is stored.
type Application struct {
	ID           string
	ClientID     string
	SecretHash   []byte // nil for public clients (spa, native)
	Name         string
	Type         string // web | spa | native
	RedirectURIs []string
	PostLogout   []string // post-logout redirect URIs
	RequiredACR  string   // "" = none
	CreatedBy    string
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// SSOIdentity links an IdP subject of one connection to a Trellis user, with
// the roles that connection last mapped into the membership (the sign-in's
// own role source, sso:<connection>).
type SSOIdentity struct {
	Connection   string
	Subject      string
	User         string
	Org          string
	Roles        []string
	CreatedAt    time.Time
	LastSignInAt time.Time
}

// SSOPolicy is how an organization lets its users sign in (no row: anything
// its connections allow).
type SSOPolicy struct {
	Org            string
	AllowedMethods []string      // oidc, saml; nil = any
	RequiredACR    []string      // the IdP's acr must be one of these; nil = any
	SessionMaxAge  time.Duration // refresh stops this long after the sign-in; 0 = the token's own lifetime
	UpdatedAt      time.Time
}

// SSOPolicyRows are the sign-in policy table, one row per organization.
type SSOPolicyRows interface {
	GetSSOPolicy(ctx context.Context, org string) (SSOPolicy, error)
	PutSSOPolicy(ctx context.Context, p SSOPolicy) error
}

// ConnectionRows are the SSO connection table.
type ConnectionRows interface {
	GetConnection(ctx context.Context, id string) (Connection, error)
	// ListConnections lists org's connections sorted by id.
	ListConnections(ctx context.Context, org string) ([]Connection, error)
	InsertConnection(ctx context.Context, c Connection) error
	UpdateConnection(ctx context.Context, c Connection) error
	// DeleteConnection removes the connection and its identity links.
	DeleteConnection(ctx context.Context, id string) error
}

// ApplicationRows are the OIDC client table. ClientID is unique.
type ApplicationRows interface {
	GetApplication(ctx context.Context, id string) (Application, error)
	GetApplicationByClientID(ctx context.Context, clientID string) (Application, error)
	// ListApplications sorts by id.
	ListApplications(ctx context.Context) ([]Application, error)
	InsertApplication(ctx context.Context, a Application) error
	UpdateApplication(ctx context.Context, a Application) error
	DeleteApplication(ctx context.Context, id string) error
}

// SSOIdentityRows are the identity links, keyed by (connection, subject).
type SSOIdentityRows interface {
	GetSSOIdentity(ctx context.Context, connection, subject string) (SSOIdentity, error)
	PutSSOIdentity(ctx context.Context, id SSOIdentity) error
}

// FederationRows are the tables of sign-in (federation).
type FederationRows interface {
	ConnectionRows
	ApplicationRows
	SSOIdentityRows
	SSOPolicyRows
}
