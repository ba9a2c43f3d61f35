package engine

import (
	"context"
	"time"
)

// Permissionship is the three-valued answer of a check.
type Permissionship string

const (
	HasPermission Permissionship = "HAS_PERMISSION"
	NoPermission  Permissionship = "NO_PERMISSION"
	Conditional   Permissionship = "CONDITIONAL"
)

// ConsistencyMode selects how fresh a read must be.
type ConsistencyMode int

const (
	// MinimizeLatency reads at a recent revision, never older than this node's last write.
	MinimizeLatency ConsistencyMode = iota
	// AtLeastAsFresh reads at or after Consistency.Token.
	AtLeastAsFresh
	// FullyConsistent reads at the newest revision.
	FullyConsistent
)

// Consistency is a read's freshness requirement.
type Consistency struct {
	Mode  ConsistencyMode
	Token string // for AtLeastAsFresh
}

// Caveat names a caveat and its (partial) context on a relationship.
type Caveat struct {
	Name    string
	Context map[string]any
}

// Relationship is one stored tuple.
type Relationship struct {
	Resource  ObjectRef
	Relation  string
	Subject   SubjectRef
	Caveat    *Caveat
	ExpiresAt *time.Time
}

func (r Relationship) String() string {
	return r.Resource.String() + "#" + r.Relation + "@" + r.Subject.String()
}

// Operation is a relationship write operation.
type Operation string

const (
	OpTouch  Operation = "touch"
	OpCreate Operation = "create"
	OpDelete Operation = "delete"
)

// RelationshipUpdate is one write.
type RelationshipUpdate struct {
	Operation    Operation
	Relationship Relationship
}

// CheckRequest asks whether Subject has Permission on Resource.
type CheckRequest struct {
	Resource    ObjectRef
	Permission  string
	Subject     SubjectRef
	Context     map[string]any
	Consistency Consistency
}

// CheckResult is the answer to one check.
type CheckResult struct {
	Permissionship Permissionship
	MissingContext []string
	CheckedAt      string // revision token the answer was computed at
	Cached         bool
}

// Allowed is true only for an unconditional grant.
func (r CheckResult) Allowed() bool { return r.Permissionship == HasPermission }

// LookupResourcesRequest lists resources of a type on which a subject holds a permission.
type LookupResourcesRequest struct {
	ResourceType string
	Permission   string
	Subject      SubjectRef
	Context      map[string]any
	Consistency  Consistency
	PageSize     int
	Cursor       string
}

// FoundObject is a lookup result.
type FoundObject struct {
	ID             string
	Permissionship Permissionship
	MissingContext []string
}

// LookupResourcesPage is one page of LookupResources.
type LookupResourcesPage struct {
	Resources  []FoundObject
	NextCursor string
	LookedUpAt string
}

// LookupSubjectsRequest lists subjects of a type holding a permission on a resource.
type LookupSubjectsRequest struct {
	Resource        ObjectRef
	Permission      string
	SubjectType     string
	SubjectRelation string
	Context         map[string]any
	Consistency     Consistency
}

// RelationshipFilter selects stored relationships. ResourceType is required.
type RelationshipFilter struct {
	ResourceType string
	ResourceID   string
	Relation     string
	Subject      *SubjectFilter
}

// SubjectFilter narrows a RelationshipFilter by subject; ID and Relation are optional.
type SubjectFilter struct {
	Type     string
	ID       string
	Relation string
}

// ReadRequest is a paged relationship read.
type ReadRequest struct {
	Filter      RelationshipFilter
	Consistency Consistency
	PageSize    int
	Cursor      string
}

// ReadPage is one page of ReadRelationships.
type ReadPage struct {
	Relationships []Relationship
	NextCursor    string
	ReadAt        string
}

// Explanation lists the chains of stored relationships that grant a permission.
type Explanation struct {
	Permissionship Permissionship
	Paths          [][]Relationship
	CheckedAt      string
}

// Checker answers permission questions. The check cache decorates it.
type Checker interface {
	Check(ctx context.Context, req CheckRequest) (CheckResult, error)
	CheckBulk(ctx context.Context, reqs []CheckRequest) ([]CheckResult, error)
}

// Engine is the relationship graph as the rest of Trellis sees it.
type Engine interface {
	Checker
	LookupResources(ctx context.Context, req LookupResourcesRequest) (LookupResourcesPage, error)
	LookupSubjects(ctx context.Context, req LookupSubjectsRequest) ([]FoundObject, error)
	Explain(ctx context.Context, req CheckRequest) (Explanation, error)
	WriteRelationships(ctx context.Context, updates []RelationshipUpdate) (string, error)
	ReadRelationships(ctx context.Context, req ReadRequest) (ReadPage, error)
	ReadSchema(ctx context.Context) (string, error)
	WriteSchema(ctx context.Context, text string) (string, error)
	Ready(ctx context.Context) error
}

// MaxUpdatesPerWrite is the largest raw write a client may send
// (POST /v1/relationships/write): SpiceDB's default per-call limit.
const MaxUpdatesPerWrite = 1000

// MaxAtomicUpdates is the largest WriteRelationships call, applied atomically
// as one SpiceDB write: the embedded server is configured for it, so one
// directory operation (an outbox entry) becomes visible all at once. A remote
// SpiceDB cluster must run with --write-relationships-max-updates-per-call=10000
// (its default, 1000, refuses larger writes). The bound also keeps one write
// under SpiceDB's 4 MiB gRPC message limit for directory-sized relationships.
const MaxAtomicUpdates = 10_000
