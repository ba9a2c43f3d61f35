package directory

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/audit"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/schema"
	"github.com/trellis-iam/trellis/store"
)

// Config tunes the directory.
type Config struct {
	MaxDepth      int           // deepest organization tree (levels); default 10
	InvitationTTL time.Duration // default 7 days
	MaxInviteTTL  time.Duration // longest invitation a caller may ask for; default 30 days
	// ImpersonationTTL is an impersonation's default duration (30 minutes);
	// MaxImpersonation caps what may be asked for (4 hours);
	// ImpersonationTokenTTL bounds each impersonation token (15 minutes).
	ImpersonationTTL      time.Duration
	MaxImpersonation      time.Duration
	ImpersonationTokenTTL time.Duration
	Platform              string // id of the platform object top-level orgs hang from; default "trellis"
	LookupTXT             func(ctx context.Context, name string) ([]string, error)
	Now                   func() time.Time
	Logger                *slog.Logger
	// AuditKey signs the audit chains' checkpoints (ADR 0011). It must be the
	// same on every node and across restarts (trellis serve derives it from
	// its configuration); when empty, a random key for this Service only.
	AuditKey audit.Key

	// A move computes its impact before it is applied (dry run or not), in a
	// scratch engine: MovePreviewTimeout bounds that computation (10 s; past
	// it, 503), MovePreviewMaxRelationships the relationships it loads (20,000;
	// past it, 422), MovePreviews how many run at once in this process (2; one
	// per organization at a time).
	MovePreviewTimeout          time.Duration
	MovePreviewMaxRelationships int
	MovePreviews                int

	// AccessHistoryRetention is how far back POST /v1/access/at answers
	// (0: as far as the relationship changelog goes).
	AccessHistoryRetention time.Duration
}

// Validate fills defaults and checks bounds.
func (c *Config) Validate() error {
	if c.MaxDepth == 0 {
		c.MaxDepth = 10
	}
	if c.MaxDepth < 1 || c.MaxDepth > 50 {
		return trellis.Invalid("maxDepth", "must be between 1 and 50, got %d", c.MaxDepth)
	}
	if c.InvitationTTL == 0 {
		c.InvitationTTL = 7 * 24 * time.Hour
	}
	if c.MaxInviteTTL == 0 {
		c.MaxInviteTTL = 30 * 24 * time.Hour
	}
	if c.ImpersonationTTL == 0 {
		c.ImpersonationTTL = 30 * time.Minute
	}
	if c.MaxImpersonation == 0 {
		c.MaxImpersonation = 4 * time.Hour
	}
	if c.ImpersonationTokenTTL == 0 {
		c.ImpersonationTokenTTL = 15 * time.Minute
	}
	if c.Platform == "" {
		c.Platform = "trellis"
	}
	if err := c.validateMovePreviews(); err != nil {
		return err
	}
	if c.AccessHistoryRetention < 0 {
		return trellis.Invalid("accessHistoryRetention", "must not be negative, got %s", c.AccessHistoryRetention)
	}
	if c.LookupTXT == nil {
		c.LookupTXT = net.DefaultResolver.LookupTXT
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if len(c.AuditKey) == 0 {
		c.AuditKey = make(audit.Key, 32)
		_, _ = rand.Read(c.AuditKey)
	}
	return nil
}

// TokenSigner mints a user access token (the federation signer, adapted by the
// composition root) carrying c.
type TokenSigner func(ctx context.Context, c AccessClaims) (token string, expiresAt time.Time, err error)

// Service is the directory: every operation authorizes its caller through the
// graph, then commits its rows, audit event and outbox of tuple updates in one
// store transaction, then waits until the outbox entry reached the engine so
// the next check sees it.
type Service struct {
	store      store.Store
	graph      engine.Engine // writes and lookups (the cached engine, so writes bump epochs)
	checker    engine.Checker
	relay      *Relay
	signer     TokenSigner
	cfg        Config
	catalogue  []string
	schemaText func(ctx context.Context) (string, error)
	moves      moveGate     // move previews running (move.go)
	tenants    *tenantHints // tenants of organizations writes were confined to (confine.go)
	keyCache   providerKeyCache
	// schemaHistory: the schema in force at a past time (access_at.go)
	schemaHistory SchemaHistory
}

// Deps are what the directory is built from.
type Deps struct {
	Store   store.Store
	Graph   engine.Engine
	Checker engine.Checker // defaults to Graph
	Signer  TokenSigner
	Relay   *Relay // defaults to a relay over Store and Graph
	// SchemaHistory tells the schema in force at a past time; defaults to
	// the current schema for every time.
	SchemaHistory SchemaHistory
}

// New builds the directory service.
func New(d Deps, cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Service{store: d.Store, graph: d.Graph, checker: d.Checker, relay: d.Relay, signer: d.Signer, cfg: cfg,
		catalogue: schema.RolePermissions(), tenants: newTenantHints()}
	if s.checker == nil {
		s.checker = d.Graph
	}
	if s.relay == nil {
		s.relay = NewRelay(d.Store, d.Graph, cfg.Logger)
	}
	s.schemaText = d.Graph.ReadSchema
	s.schemaHistory = d.SchemaHistory
	if s.schemaHistory == nil {
		s.schemaHistory = storedSchema{s}
	}
	return s, nil
}

// Relay is the service's outbox relay.
func (s *Service) Relay() *Relay { return s.relay }

// Principal kinds.
const (
	KindProvider       = "provider"        // the provider admin key
	KindUser           = "user"            // a user access token
	KindServiceAccount = "service_account" // an API key of a service account
)

// Principal is who performs an operation.
type Principal struct {
	Kind         string
	ID           string   // user or service-account id; key name for the provider
	Org          string   // a token's or key's organization: only it and its subtree are visible
	Permissions  []string // an API key's limit; nil = none beyond the graph's
	KeyID        string   // the API key used, for audit
	Impersonator string   // "user:<id>" acting as this user (a token's act claim)
	// Impersonation is the live impersonation an Impersonator acts through:
	// every permission is also checked against it (live, within its scope).
	Impersonation string
	// Reading marks a request that only reads (HTTP GET): an impersonation
	// scoped read-only lets it check any permission (as read:<permission>).
	Reading bool
}

// Provider is the principal of the provider admin key.
func Provider(name string) Principal { return Principal{Kind: KindProvider, ID: name} }

// Subject is the principal as a graph subject.
func (p Principal) Subject() engine.SubjectRef {
	return engine.SubjectRef{Object: engine.ObjectRef{Type: p.Kind, ID: p.ID}}
}

// Actor is the principal as an audit actor string.
func (p Principal) Actor() string {
	if p.Kind == KindProvider {
		return "provider:" + p.ID
	}
	return p.Kind + ":" + p.ID
}

// op collects what one operation writes besides its rows.
type op struct {
	p       Principal
	now     time.Time
	updates []engine.RelationshipUpdate
	filters []engine.RelationshipFilter
	events  []audit.Event
	action  string
	// authority, when set, is whose authority the effects are checked
	// against instead of p (an accepted invitation: its inviter)
	authority *Principal
	created   map[string]bool // organizations this operation creates
	// delegations the actor drew on for what it granted or revoked
	delegations []string
	// refOrg: the organization ref named, as runInTenant read it (orgForOp)
	ref    string
	refOrg *store.Org
	// fresh: objects ("user:<id>", "group:<id>") this operation created with
	// a new random id, which no stored relationship can name yet
	fresh map[string]bool
	// ev weighs the operation's effects (effects.go); reads memoises the
	// graph reads it makes (readAll)
	ev    *effects
	reads map[string][]engine.Relationship
	// domains: verified domain → the organization that verified it ("" none)
	domains map[string]string
	// known: a provisioning operation's read-ahead (scimknown.go)
	known *scimKnown
}

// created notes an object this operation made with a new random id.
func (o *op) madeFresh(typ, id string) {
	if o.fresh == nil {
		o.fresh = map[string]bool{}
	}
	o.fresh[typ+":"+id] = true
}

func (o *op) touch(rels ...engine.Relationship) {
	for _, r := range rels {
		o.updates = append(o.updates, engine.RelationshipUpdate{Operation: engine.OpTouch, Relationship: r})
	}
}

func (o *op) delete(rels ...engine.Relationship) {
	for _, r := range rels {
		o.updates = append(o.updates, engine.RelationshipUpdate{Operation: engine.OpDelete, Relationship: r})
	}
}

// replace deletes the relationships of before that after lacks and touches after.
// A role binding's structure (its role, its place on the organization) is
// shared by every holder of the role there: one holder's change keeps it.
func (o *op) replace(before, after []engine.Relationship) {
	keep := map[string]bool{}
	for _, r := range after {
		keep[r.String()] = true
	}
	for _, r := range before {
		if !keep[r.String()] && !bindingStructure(r) {
			o.delete(r)
		}
	}
	o.touch(after...)
}

// revoke deletes a subject's relationships, keeping shared binding structure.
func (o *op) revoke(rels ...engine.Relationship) {
	for _, r := range rels {
		if !bindingStructure(r) {
			o.delete(r)
		}
	}
}

// bindingStructure: role_binding#role and organization#binding, which every
// subject bound to a custom role in an organization shares (grantTuples). A
// binding without subjects grants nothing; deleting the role or the
// organization removes it.
func bindingStructure(r engine.Relationship) bool {
	return r.Resource.Type == "role_binding" && r.Relation == "role" ||
		r.Resource.Type == "organization" && r.Relation == "binding"
}

// record appends an audit event to org's chain ("" = the platform chain).
func (o *op) record(org, action, target string, details map[string]any) {
	o.events = append(o.events, audit.Event{
		At: o.now, Actor: o.p.Actor(), Impersonator: o.p.Impersonator, Action: action,
		Target: target, Organization: org, Details: details,
	})
}

// run executes one directory operation: fn writes rows and collects tuple
// updates and audit events; all commit in one transaction; then the outbox
// entry is applied to the engine before run returns.
func (s *Service) run(ctx context.Context, p Principal, action string, fn func(tx store.Tx, o *op) error) error {
	var seq int64
	var written *op
	err := s.store.InTx(ctx, func(tx store.Tx) error {
		o := &op{p: p, now: s.cfg.Now().UTC(), action: action}
		if err := fn(tx, o); err != nil {
			return err
		}
		if err := s.authorizeEffects(ctx, tx, o); err != nil {
			return err
		}
		if pl := planOf(ctx); pl != nil { // a plan: authorized, then rolled back
			pl.updates, pl.filters = o.updates, o.filters
			return errPlanned
		}
		if tp, ok := tx.(store.TailPlanner); ok {
			tp.PlanTail(chainsOf(o.events), len(o.updates) > 0 || len(o.filters) > 0)
		}
		if err := s.appendEvents(ctx, tx, o); err != nil {
			return err
		}
		if len(o.updates) == 0 && len(o.filters) == 0 {
			return nil
		}
		var err error
		seq, err = tx.AppendOutbox(ctx, store.OutboxEntry{Action: action, Updates: o.updates, DeleteFilters: o.filters, CreatedAt: o.now})
		written = o
		return err
	})
	var esc *escalation
	if errors.As(err, &esc) && planOf(ctx) == nil {
		s.recordDenied(ctx, p, action, esc)
	}
	if err != nil || seq == 0 {
		return err
	}
	if s.relay.beforeWait != nil {
		s.relay.beforeWait(seq)
	}
	if err := s.relay.WaitApplied(ctx, seq); err != nil {
		return err
	}
	// applied by another node's relay: this node's engine and cache learn of
	// it before the write is acknowledged (read-your-writes on this node),
	// not when its Watch delivers it
	if !s.relay.appliedHere(seq) {
		if w, ok := s.graph.(engine.ElsewhereWriter); ok {
			if err := w.WrittenElsewhere(ctx, written.updates, written.filters); err != nil {
				return fmt.Errorf("%w: applied, but this node could not catch up with it: %v", trellis.ErrUnavailable, err)
			}
		}
	}
	return nil
}

// recordDenied appends a refused escalation to the organization's chain, in a
// transaction of its own (the operation's own was rolled back).
func (s *Service) recordDenied(ctx context.Context, p Principal, action string, esc *escalation) {
	err := s.store.InTx(store.Unconfined(ctx), func(tx store.Tx) error {
		o := &op{p: p, now: s.cfg.Now().UTC()}
		o.record(esc.org, action+".denied", "organization:"+esc.org, map[string]any{"permission": esc.perm, "field": esc.field, "reason": "escalation"})
		return s.appendEvents(ctx, tx, o)
	})
	if err != nil {
		s.cfg.Logger.Warn("audit of a refused escalation failed", "err", err)
	}
}

// chainsOf lists the audit chains events append to, in order, once each.
func chainsOf(events []audit.Event) []string {
	var out []string
	for _, ev := range events {
		if !slices.Contains(out, ev.Organization) {
			out = append(out, ev.Organization)
		}
	}
	return out
}

// appendEvents seals o's events onto their chains and stores them.
func (s *Service) appendEvents(ctx context.Context, tx store.Tx, o *op) error {
	for _, ev := range o.events {
		if o.p.KeyID != "" || o.p.Impersonation != "" {
			if ev.Details == nil {
				ev.Details = map[string]any{}
			}
		}
		if o.p.KeyID != "" {
			ev.Details["apiKey"] = o.p.KeyID
		}
		if o.p.Impersonation != "" {
			ev.Details["impersonation"] = o.p.Impersonation
		}
		if len(o.delegations) > 0 {
			if ev.Details == nil {
				ev.Details = map[string]any{}
			}
			ev.Details["delegation"] = o.delegations
		}
		head, err := tx.AuditHead(ctx, ev.Organization)
		if err != nil {
			return err
		}
		s.cfg.AuditKey.Seal(head, &ev)
		if err := tx.AppendAudit(ctx, ev); err != nil {
			return err
		}
	}
	return nil
}

// read runs fn in a read-only view.
func (s *Service) read(ctx context.Context, fn func(tx store.Tx) error) error {
	return s.store.Read(ctx, fn)
}

// newID returns a prefixed random id (80 bits, lower-case base32), e.g. org_k2j4…
func newID(prefix string) string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return prefix + "_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// newSecret returns a 256-bit random secret, base64url.
func newSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// cursors are opaque to clients.
func encodeCursor(key string) string {
	if key == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(key))
}

func decodeCursor(field, c string) (string, error) {
	if c == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) == 0 {
		return "", trellis.Invalid(field, "is not a cursor this server issued")
	}
	return string(b), nil
}

// pageSize bounds a requested page size.
func pageSize(n int) (int, error) {
	switch {
	case n == 0:
		return 100, nil
	case n < 0 || n > 1000:
		return 0, trellis.Invalid("pageSize", "must be between 1 and 1000, got %d", n)
	}
	return n, nil
}

func orgRef(id string) engine.ObjectRef { return engine.ObjectRef{Type: "organization", ID: id} }

func subj(typ, id string) engine.SubjectRef {
	return engine.SubjectRef{Object: engine.ObjectRef{Type: typ, ID: id}}
}

func rel(res engine.ObjectRef, relation string, s engine.SubjectRef) engine.Relationship {
	return engine.Relationship{Resource: res, Relation: relation, Subject: s}
}

func notFound(what, id string) error { return fmt.Errorf("%w: %s %q", trellis.ErrNotFound, what, id) }

// Ready reports whether the directory store answers.
func (s *Service) Ready(ctx context.Context) error { return s.store.Ready(ctx) }
