package store

import (
	"context"
	"time"
)

// SCIMToken authenticates one organization's identity provider on
// /scim/v2/{org}. Only the SHA-256 of its secret is stored. It acts with the
// authority of whoever created it (CreatedBy, limited by Permissions when
// that was an API key), never more.
type SCIMToken struct {
	ID          string
	Org         string
	Name        string
	Hash        []byte
	CreatedBy   string   // audit actor of the creator: user:<id>, service_account:<id>, provider:<name>
	Permissions []string // the creating API key's limit; nil = none beyond the graph's
	CreatedKey  string   // the API key it was minted with ("" for a user's token or the admin key): it dies with it
	CreatedAt   time.Time
	ExpiresAt   time.Time
	LastUsedAt  *time.Time
	RevokedAt   *time.Time
}

// SCIMMapping turns an identity-provider group (its displayName, externalId or
// id) into roles on the organization.
type SCIMMapping struct {
	Group string
	Roles []string
}

// SCIM resource kinds.
const (
	SCIMUser  = "User"
	SCIMGroup = "Group"
)

// SCIMResource is what an organization's identity provider provisioned: one
// user (ID is the Trellis user id) or group (the Trellis group id), as the
// provider last set it. Name (userName or displayName) is unique per
// organization and kind, compared case-insensitively; ExternalID is the
// provider's own id.
type SCIMResource struct {
	Org        string
	Kind       string // User | Group
	ID         string
	Name       string
	ExternalID string
	Version    int64
	Doc        []byte   // the SCIM representation (JSON) as the provider set it
	Roles      []string // roles provisioning granted (source scim): a group's mapped roles
	Active     bool     // a user: the provider wants its membership active
	Members    []string // a group: the member values the provider set (user or group ids)
	// Pending is what the last write left unapplied (members not yet
	// provisioned, roles that did not resolve…), for repair; "" = none.
	Pending   string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// SCIMRequest is one request of an identity provider, for the sync status.
type SCIMRequest struct {
	Org      string
	Resource string // Users | Groups | Bulk | …
	Method   string
	Status   int
	ScimType string
	Detail   string
	At       time.Time
}

// SCIMSync is the sync status of one resource type of an organization: its
// last request and how many requests and errors it had.
type SCIMSync struct {
	Last     SCIMRequest
	Requests int64
	Errors   int64
}

// SCIMErrorsKept is how many recent failed requests a store keeps per organization.
const SCIMErrorsKept = 50

// SCIMLookup names rows of one organization to read together (LookupSCIM).
type SCIMLookup struct {
	Org string
	// UserNames and GroupNames are provisioned resources' names, matched
	// case-insensitively as SCIMResourceByName does
	UserNames, GroupNames []string
	// Emails are users' emails (any organization's, as GetUserByEmail)
	Emails []string
	// Members are user ids whose memberships of Org to read
	Members []string
}

// SCIMFound is what LookupSCIM found, in no particular order.
type SCIMFound struct {
	Resources   []SCIMResource // by UserNames (kind User) and GroupNames (kind Group)
	Users       []User         // by Emails
	Memberships []Membership   // of Members in Org
}

// SCIMRows are the SCIM tables.
type SCIMRows interface {
	GetSCIMToken(ctx context.Context, id string) (SCIMToken, error)
	// ListSCIMTokens sorts by id.
	ListSCIMTokens(ctx context.Context, org string) ([]SCIMToken, error)
	InsertSCIMToken(ctx context.Context, t SCIMToken) error
	UpdateSCIMToken(ctx context.Context, t SCIMToken) error

	// SCIMMappings returns org's mappings in stored order (none: nil).
	SCIMMappings(ctx context.Context, org string) ([]SCIMMapping, error)
	PutSCIMMappings(ctx context.Context, org string, m []SCIMMapping) error

	GetSCIMResource(ctx context.Context, org, kind, id string) (SCIMResource, error)
	// SCIMResourceByName finds by Name, case-insensitively.
	SCIMResourceByName(ctx context.Context, org, kind, name string) (SCIMResource, error)
	// ListSCIMResources sorts by id (Page.After is an id).
	ListSCIMResources(ctx context.Context, org, kind string, p Page) ([]SCIMResource, error)
	// PutSCIMResource inserts or replaces (org, kind, id); a Name another
	// resource of the same organization and kind holds is ErrConflict.
	PutSCIMResource(ctx context.Context, r SCIMResource) error
	DeleteSCIMResource(ctx context.Context, org, kind, id string) error
	// LookupSCIM reads at once what a SCIM batch's operations will look up
	// one by one (one round trip on PostgreSQL): q's names, emails and
	// memberships that exist; those it does not return do not.
	LookupSCIM(ctx context.Context, q SCIMLookup) (SCIMFound, error)

	// RecordSCIMRequest counts r in its resource's sync status and keeps it
	// among the organization's recent errors when its Status is 400 or more
	// (the newest SCIMErrorsKept).
	RecordSCIMRequest(ctx context.Context, r SCIMRequest) error
	// SCIMSyncStatus lists org's sync status per resource (sorted by
	// resource) and its recent errors, newest first.
	SCIMSyncStatus(ctx context.Context, org string) ([]SCIMSync, []SCIMRequest, error)
}
