package store

import (
	"context"
	"time"

	"github.com/trellis-iam/trellis/audit"
	"github.com/trellis-iam/trellis/engine"
)

// Store persists the directory and the audit log. One directory operation runs
// in one InTx closure: its rows, its audit event and its outbox of tuple updates
// commit together or not at all. Read runs a read-only view.
type Store interface {
	InTx(ctx context.Context, fn func(tx Tx) error) error
	Read(ctx context.Context, fn func(tx Tx) error) error
	Ready(ctx context.Context) error
	Close() error
	OutboxClaimer
}

// Tx is one transaction over every table; role interfaces below keep callers narrow.
// Writes inside Read fail. Missing rows are trellis.ErrNotFound; unique-key
// violations (slug, email, role key, verified domain, invitation token hash) are
// trellis.ErrConflict. A failed write ends the transaction's usefulness: return
// its error from the closure (PostgreSQL aborts the transaction at the first
// failed statement), and check for conflicts with a read first when a clear
// answer is wanted. Keys sort byte-wise (PostgreSQL: COLLATE "C").
type Tx interface {
	OrgRows
	UserRows
	MemberRows
	GroupRows
	RoleRows
	InvitationRows
	ServiceAccountRows
	ProviderKeyRows
	AuditRows
	OutboxRows
	DelegationRows
	ImpersonationRows
	SCIMRows
	SchemaVersionRows
	SigningKeyRows
	ChangelogRows
	ChangelogIndex
	FederationRows
	ProviderGrantRows
	Savepoints
	Deferred
}

// Page bounds a listing: rows sort by the listing's key, After is the last key
// of the previous page ("" = from the start), Limit <= 0 means no limit.
type Page struct {
	After string
	Limit int
}

// Org status values.
const (
	StatusActive    = "active"
	StatusSuspended = "suspended"
	StatusInvited   = "invited"
)

// Org is an organization row.
type Org struct {
	ID           string
	Slug         string
	Name         string
	Parent       string // "" for a top-level organization
	Status       string // active | suspended
	Domains      []Domain
	Branding     map[string]string
	FeatureFlags map[string]bool
	Policy       OrgPolicy
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// OrgPolicy is how an organization lets others administer it.
type OrgPolicy struct {
	// DelegationApproval: delegations on the organization stay pending until
	// one of its administrators approves them.
	DelegationApproval bool
	// DelegationRequired (mandatory delegation): the organization has no
	// administrators of its own; it is administered through its ancestors and
	// delegations only.
	DelegationRequired bool
	// ImpersonationApproval: impersonating its members needs the approval of
	// one of its administrators.
	ImpersonationApproval bool
}

// Domain is an email domain an organization claims; Verified ones are unique.
type Domain struct {
	Domain     string
	Verified   bool
	Token      string // the DNS TXT value proving control (not a secret)
	Method     string // dns | manual, once verified
	VerifiedAt *time.Time
}

// OrgFilter selects organizations. Listings sort by slug (Page.After is a slug).
type OrgFilter struct {
	Parent *string  // nil: any parent; "": top-level only
	Query  string   // case-insensitive substring of name or slug
	IDs    []string // nil: any; else only these ids
	Page   Page
}

// OrgRows are the organization table.
type OrgRows interface {
	GetOrg(ctx context.Context, id string) (Org, error)
	GetOrgBySlug(ctx context.Context, slug string) (Org, error)
	ListOrgs(ctx context.Context, f OrgFilter) ([]Org, error)
	// Children lists the direct children of id, sorted by id.
	Children(ctx context.Context, id string) ([]Org, error)
	// OrgByVerifiedDomain finds the organization that verified domain.
	OrgByVerifiedDomain(ctx context.Context, domain string) (Org, error)
	InsertOrg(ctx context.Context, o Org) error
	UpdateOrg(ctx context.Context, o Org) error
	DeleteOrg(ctx context.Context, id string) error
}

// User is a person known to Trellis. Email is normalized (lower case) and unique.
type User struct {
	ID         string
	Email      string
	Name       string
	ExternalID string
	Status     string // active | suspended
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// UserRows are the user table.
type UserRows interface {
	GetUser(ctx context.Context, id string) (User, error)
	GetUserByEmail(ctx context.Context, email string) (User, error)
	InsertUser(ctx context.Context, u User) error
	UpdateUser(ctx context.Context, u User) error
}

// Membership is a user's (or service account's) place in one organization.
type Membership struct {
	Org              string
	User             string
	Roles            []string // built-in role names and custom role keys
	Status           string   // active | invited | suspended
	JoinedAt         time.Time
	AuthenticatedVia string // api | invitation | sso:<connection> | scim
	UpdatedAt        time.Time
}

// MemberRows are the membership table.
type MemberRows interface {
	GetMembership(ctx context.Context, org, user string) (Membership, error)
	PutMembership(ctx context.Context, m Membership) error
	DeleteMembership(ctx context.Context, org, user string) error
	// ListMembers sorts by user id (Page.After is a user id).
	ListMembers(ctx context.Context, org string, p Page) ([]Membership, error)
	// UserMemberships lists every membership of user, sorted by org id.
	UserMemberships(ctx context.Context, user string) ([]Membership, error)
}

// Group is a set of users (and nested groups) inside one organization that holds roles.
type Group struct {
	ID          string
	Org         string
	Name        string
	Description string
	Roles       []string
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// GroupMember is one member of a group: a user or a nested group.
type GroupMember struct {
	Group   string
	Kind    string // user | group
	ID      string
	AddedAt time.Time
}

// GroupRows are the group and group-member tables.
type GroupRows interface {
	GetGroup(ctx context.Context, id string) (Group, error)
	// ListGroups sorts by id.
	ListGroups(ctx context.Context, org string) ([]Group, error)
	InsertGroup(ctx context.Context, g Group) error
	UpdateGroup(ctx context.Context, g Group) error
	// DeleteGroup removes the group, its members and its own membership in other groups.
	DeleteGroup(ctx context.Context, id string) error
	PutGroupMember(ctx context.Context, m GroupMember) error
	DeleteGroupMember(ctx context.Context, group, kind, id string) error
	// GroupMembers sorts by (kind, id).
	GroupMembers(ctx context.Context, group string) ([]GroupMember, error)
	// GroupsOf lists the groups that directly contain (kind, id), sorted by group id.
	GroupsOf(ctx context.Context, kind, id string) ([]GroupMember, error)
}

// Role is a custom role defined by an organization; its permissions are data.
type Role struct {
	ID          string
	Org         string
	Key         string // unique within Org
	Name        string
	Description string
	Permissions []string
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// RoleRows are the custom role table.
type RoleRows interface {
	GetRole(ctx context.Context, id string) (Role, error)
	GetRoleByKey(ctx context.Context, org, key string) (Role, error)
	// ListRoles sorts by key.
	ListRoles(ctx context.Context, org string) ([]Role, error)
	InsertRole(ctx context.Context, r Role) error
	UpdateRole(ctx context.Context, r Role) error
	DeleteRole(ctx context.Context, id string) error
}

// Invitation invites an email into an organization with roles. Only the
// SHA-256 of its token is stored.
type Invitation struct {
	ID        string
	Org       string
	Email     string
	Roles     []string
	TokenHash []byte
	InvitedBy string
	// InviterKey is the API key (service-account or provider) the inviter
	// sent it with, "" for a user's token or the admin key: acceptance is
	// weighed against that key's limit then, and a revoked key grants nothing.
	InviterKey string
	// InviterLimit is the permission list the inviter acted with (nil: none),
	// which a token narrowed from its key may hold below the key's own.
	InviterLimit []string
	// Permissions are what Roles carried when it was sent (nil: unknown,
	// sent before they were kept): acceptance grants no more.
	Permissions []string
	CreatedAt   time.Time
	ExpiresAt   time.Time
	AcceptedAt  *time.Time
	AcceptedBy  string
	RevokedAt   *time.Time
}

// InvitationRows are the invitation table.
type InvitationRows interface {
	GetInvitation(ctx context.Context, id string) (Invitation, error)
	GetInvitationByTokenHash(ctx context.Context, hash []byte) (Invitation, error)
	// ListInvitations sorts by id.
	ListInvitations(ctx context.Context, org string) ([]Invitation, error)
	InsertInvitation(ctx context.Context, inv Invitation) error
	UpdateInvitation(ctx context.Context, inv Invitation) error
}

// ServiceAccount is an org-scoped machine identity.
type ServiceAccount struct {
	ID          string
	Org         string
	Name        string
	Description string
	Roles       []string
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// APIKey authenticates a service account. Only the SHA-256 of the secret is
// stored; Permissions limit what the key may do on the account's organization.
type APIKey struct {
	ID             string
	ServiceAccount string
	Org            string
	Hash           []byte
	Permissions    []string
	CreatedAt      time.Time
	ExpiresAt      *time.Time // set at creation or by rotation (the overlap window)
	LastUsedAt     *time.Time
	RevokedAt      *time.Time
}

// ServiceAccountRows are the service-account and API-key tables.
type ServiceAccountRows interface {
	GetServiceAccount(ctx context.Context, id string) (ServiceAccount, error)
	// ListServiceAccounts sorts by id.
	ListServiceAccounts(ctx context.Context, org string) ([]ServiceAccount, error)
	InsertServiceAccount(ctx context.Context, sa ServiceAccount) error
	UpdateServiceAccount(ctx context.Context, sa ServiceAccount) error
	// DeleteServiceAccount removes the account and its keys.
	DeleteServiceAccount(ctx context.Context, id string) error
	GetAPIKey(ctx context.Context, id string) (APIKey, error)
	// ListAPIKeys sorts by id.
	ListAPIKeys(ctx context.Context, serviceAccount string) ([]APIKey, error)
	InsertAPIKey(ctx context.Context, k APIKey) error
	UpdateAPIKey(ctx context.Context, k APIKey) error
}

// AuditFilter selects audit events. Org "" with AllOrgs lists every chain
// (the provider's view); Org "" without it is the platform chain (events on
// no organization, e.g. user creation). Cursor is the Next of the previous page.
type AuditFilter struct {
	Org     string
	AllOrgs bool
	Since   *time.Time
	Until   *time.Time
	Actor   string
	Action  string
	Cursor  int64 // events after this position in global append order
	Limit   int
}

// AuditRows are the audit log: per-organization chains plus their heads.
type AuditRows interface {
	// AuditHead is the newest (seq, hash, checkpoint) of org's chain; the zero Head when empty.
	AuditHead(ctx context.Context, org string) (audit.Head, error)
	// AppendAudit stores a sealed event with its checkpoint and moves its
	// chain's head to (ev.Seq, ev.Hash, ev.HeadCheckpoint). The event's row
	// never keeps HeadCheckpoint (it reads back empty).
	AppendAudit(ctx context.Context, ev audit.Event) error
	// ListAudit returns matching events in append order and the cursor of the
	// last one (0 when none), for the next page.
	ListAudit(ctx context.Context, f AuditFilter) (events []audit.Event, next int64, err error)
	// AuditChain returns every event of org's chain in stored order, for verification.
	AuditChain(ctx context.Context, org string) ([]audit.Event, error)
}

// OutboxEntry is the graph half of one directory operation: the tuple updates
// (touch or delete only, so re-applying is harmless) and relationship filters
// whose matches are deleted, applied to the engine in Seq order after commit.
// Applied entries stay as the relationship changelog.
type OutboxEntry struct {
	Seq           int64
	Action        string // the directory action that wrote it
	Updates       []engine.RelationshipUpdate
	DeleteFilters []engine.RelationshipFilter
	CreatedAt     time.Time
	AppliedAt     *time.Time
	Revision      string // the engine's token for the write that applied it
}

// OutboxRows are the outbox.
type OutboxRows interface {
	// AppendOutbox stores e and returns its Seq.
	AppendOutbox(ctx context.Context, e OutboxEntry) (int64, error)
	// PendingOutbox lists unapplied entries in Seq order, at most limit.
	PendingOutbox(ctx context.Context, limit int) ([]OutboxEntry, error)
	MarkApplied(ctx context.Context, seq int64, revision string, at time.Time) error
	// OutboxApplied reports whether seq is applied.
	OutboxApplied(ctx context.Context, seq int64) (bool, error)
}

// Delegation status values (expiry is computed from ExpiresAt, not stored).
const (
	DelegationPending = "pending"
	DelegationActive  = "active"
	DelegationRevoked = "revoked"
)

// Delegation grants administration scopes on an organization to a grantee.
type Delegation struct {
	ID         string
	Org        string
	Grantee    string   // user:<id> | group:<id> | organization:<id>#admin
	Scopes     []string // members, roles, sso, scim, branding, audit, billing
	Subtree    bool     // the scopes reach the organization's descendants too
	ExpiresAt  *time.Time
	Status     string   // pending | active | revoked
	GrantedBy  string   // audit actor of the grantor
	Via        []string // every delegation the grantor drew its scopes from; nil = its own right
	Reason     string
	CreatedAt  time.Time
	ApprovedBy string
	ApprovedAt *time.Time
	RevokedBy  string
	RevokedAt  *time.Time
}

// DelegationRows are the delegation table.
type DelegationRows interface {
	GetDelegation(ctx context.Context, id string) (Delegation, error)
	// ListDelegations lists the delegations on org (every status), sorted by id.
	ListDelegations(ctx context.Context, org string) ([]Delegation, error)
	// DelegationsVia lists the delegations granted through delegation id, sorted by id.
	DelegationsVia(ctx context.Context, id string) ([]Delegation, error)
	InsertDelegation(ctx context.Context, d Delegation) error
	UpdateDelegation(ctx context.Context, d Delegation) error
}

// Impersonation status values (expiry is computed from ExpiresAt, not stored).
const (
	ImpersonationPending = "pending"
	ImpersonationActive  = "active"
	ImpersonationEnded   = "ended"
)

// Impersonation lets an actor act as a target user of an organization for a
// while, within a permission scope.
type Impersonation struct {
	ID          string
	Org         string
	Actor       string // user id of who acts
	Target      string // user id of who is acted as
	Reason      string
	Scopes      []string // permissions allowed while impersonating ("*" = all the target holds)
	Duration    time.Duration
	Status      string // pending | active | ended
	RequestedBy string // audit actor of the requester
	CreatedAt   time.Time
	ApprovedBy  string
	ApprovedAt  *time.Time
	StartedAt   *time.Time
	ExpiresAt   *time.Time // StartedAt + Duration once active
	EndedBy     string
	EndedAt     *time.Time
}

// ImpersonationRows are the impersonation table.
type ImpersonationRows interface {
	GetImpersonation(ctx context.Context, id string) (Impersonation, error)
	// ListImpersonations lists the impersonations in org, sorted by id.
	ListImpersonations(ctx context.Context, org string) ([]Impersonation, error)
	InsertImpersonation(ctx context.Context, im Impersonation) error
	UpdateImpersonation(ctx context.Context, im Impersonation) error
}
