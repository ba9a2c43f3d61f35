package directory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// Impersonation scopes beyond plain permission names (schema caveat
// impersonation_scope): ScopeReadOnly allows access and the permissions named
// view*, read*, list* or get*; ScopeAll every permission the target holds.
const (
	ScopeReadOnly = "read-only"
	ScopeAll      = "*"
)

var permissionName = regexp.MustCompile(`^[a-z][a-z0-9_]{1,62}[a-z0-9]$`)

// Impersonation is an impersonation as clients see it.
type Impersonation struct {
	ID              string           `json:"id"`
	Organization    string           `json:"organization"`
	Actor           string           `json:"actor"`
	Target          string           `json:"target"`
	Reason          string           `json:"reason"`
	Scopes          []string         `json:"scopes"`
	DurationSeconds int              `json:"durationSeconds"`
	Status          string           `json:"status"` // pending | active | expired | ended
	RequestedBy     string           `json:"requestedBy"`
	CreatedAt       time.Time        `json:"createdAt"`
	ApprovedBy      string           `json:"approvedBy,omitempty"`
	ApprovedAt      *time.Time       `json:"approvedAt,omitempty"`
	StartedAt       *time.Time       `json:"startedAt,omitempty"`
	ExpiresAt       *time.Time       `json:"expiresAt"`
	EndedBy         string           `json:"endedBy,omitempty"`
	EndedAt         *time.Time       `json:"endedAt,omitempty"`
	Actions         []ImpersonatedOp `json:"actions,omitempty"` // GET: what was done while impersonating
}

// ImpersonatedOp is one audited action taken while impersonating.
type ImpersonatedOp struct {
	Seq          int64     `json:"seq"`
	At           time.Time `json:"at"`
	Action       string    `json:"action"`
	Target       string    `json:"target"`
	Organization string    `json:"organization"`
}

// Duration accepts seconds (a JSON number or numeric string), a Go duration
// ("30m") or an ISO 8601 duration ("PT30M").
type Duration time.Duration

var isoDuration = regexp.MustCompile(`^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$`)

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var n float64
	if err := json.Unmarshal(b, &n); err == nil {
		*d = Duration(time.Duration(n * float64(time.Second)))
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return trellis.Invalid("duration", "must be seconds, a duration such as \"30m\" or ISO 8601 such as \"PT30M\"")
	}
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(n * float64(time.Second)), nil
	}
	if v, err := time.ParseDuration(s); err == nil {
		return v, nil
	}
	m := isoDuration.FindStringSubmatch(strings.ToUpper(s))
	if m == nil || s == "P" || strings.HasSuffix(strings.ToUpper(s), "T") {
		return 0, trellis.Invalid("duration", "must be seconds, a duration such as \"30m\" or ISO 8601 such as \"PT30M\", got %q", s)
	}
	var total time.Duration
	for i, unit := range []time.Duration{24 * time.Hour, time.Hour, time.Minute, time.Second} {
		if m[i+1] == "" {
			continue
		}
		f, _ := strconv.ParseFloat(m[i+1], 64)
		total += time.Duration(f * float64(unit))
	}
	return total, nil
}

// CreateImpersonation is the body of POST /v1/impersonations.
type CreateImpersonation struct {
	Actor        string    `json:"actor"`
	Target       string    `json:"target"`
	Organization string    `json:"organization"`
	Reason       string    `json:"reason"`
	Scopes       []string  `json:"scopes"`
	Duration     *Duration `json:"duration"`
}

func (s *Service) impersonationStatus(im store.Impersonation) string {
	if im.Status == store.ImpersonationActive && im.ExpiresAt != nil && !s.cfg.Now().Before(*im.ExpiresAt) {
		return "expired"
	}
	return im.Status
}

func (s *Service) impersonationView(im store.Impersonation) Impersonation {
	v := Impersonation{ID: im.ID, Organization: im.Org, Actor: "user:" + im.Actor, Target: "user:" + im.Target,
		Reason: im.Reason, Scopes: im.Scopes, DurationSeconds: int(im.Duration / time.Second), Status: s.impersonationStatus(im),
		RequestedBy: im.RequestedBy, CreatedAt: im.CreatedAt, ApprovedBy: im.ApprovedBy, ApprovedAt: im.ApprovedAt,
		StartedAt: im.StartedAt, ExpiresAt: im.ExpiresAt, EndedBy: im.EndedBy, EndedAt: im.EndedAt}
	if v.ExpiresAt == nil && im.Status == store.ImpersonationPending {
		at := s.cfg.Now().UTC().Add(im.Duration) // what it would be if approved now
		v.ExpiresAt = &at
	}
	return v
}

// impersonationScopes normalizes scopes: presets (read-only, *) and
// permission names; none means read-only.
func impersonationScopes(in []string) ([]string, error) {
	if len(in) == 0 {
		return []string{ScopeReadOnly}, nil
	}
	var out []string
	for i, sc := range in {
		switch strings.ToLower(strings.TrimSpace(sc)) {
		case "read-only", "read_only", "readonly", "read":
			sc = ScopeReadOnly
		case "*", "all", "full":
			sc = ScopeAll
		default:
			if !permissionName.MatchString(sc) {
				return nil, trellis.Invalid(fmt.Sprintf("scopes[%d]", i), "must be a permission name, %q or %q, got %q", ScopeReadOnly, ScopeAll, sc)
			}
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out, nil
}

func userID(field, ref string) (string, error) {
	id := strings.TrimPrefix(ref, "user:")
	if id == "" || strings.ContainsAny(id, ":#") {
		return "", trellis.Invalid(field, "must be user:<id>, got %q", ref)
	}
	return id, nil
}

// impersonationTuples place a live impersonation in the graph: the actor
// relationship carries the scope (caveat) and expires with it.
func impersonationTuples(im store.Impersonation) []engine.Relationship {
	ref := engine.ObjectRef{Type: "impersonation", ID: im.ID}
	actor := rel(ref, "actor", subj("user", im.Actor))
	actor.ExpiresAt = im.ExpiresAt
	allowed := make([]any, len(im.Scopes))
	for i, sc := range im.Scopes {
		allowed[i] = sc
	}
	actor.Caveat = &engine.Caveat{Name: "impersonation_scope", Context: map[string]any{"allowed": allowed}}
	return []engine.Relationship{
		rel(ref, "org", engine.SubjectRef{Object: orgRef(im.Org)}),
		rel(ref, "target", subj("user", im.Target)),
		actor,
	}
}

// start makes a pending or new impersonation live from now.
func start(im *store.Impersonation, now time.Time) {
	exp := now.Add(im.Duration)
	im.Status, im.StartedAt, im.ExpiresAt = store.ImpersonationActive, &now, &exp
}

func impersonationDetails(im store.Impersonation) map[string]any {
	m := map[string]any{"actor": "user:" + im.Actor, "target": "user:" + im.Target, "reason": im.Reason,
		"scopes": im.Scopes, "durationSeconds": int(im.Duration / time.Second), "impersonation": im.ID}
	if im.ExpiresAt != nil {
		m["expiresAt"] = im.ExpiresAt.Format(time.RFC3339)
	}
	return m
}

// Impersonate requests that actor act as target, a member of organization,
// for a reason, within scopes, for a while (default 30 minutes, capped). The
// actor must be allowed to impersonate in the organization (provider support
// or its administrators); the caller is the actor or a provider admin. It is
// live at once unless the organization requires approval.
func (s *Service) Impersonate(ctx context.Context, p Principal, in CreateImpersonation) (Impersonation, error) {
	reason := strings.TrimSpace(in.Reason)
	switch {
	case reason == "":
		return Impersonation{}, trellis.Invalid("reason", "is required: say why you act as this user")
	case len(reason) > 1000:
		return Impersonation{}, trellis.Invalid("reason", "at most 1000 characters")
	case in.Organization == "":
		return Impersonation{}, trellis.Invalid("organization", "is required")
	}
	actorID, err := userID("actor", in.Actor)
	if in.Actor == "" && p.Kind == KindUser && p.Impersonator == "" {
		actorID, err = p.ID, nil // the caller itself
	}
	if err != nil {
		return Impersonation{}, err
	}
	targetID, err := userID("target", in.Target)
	if err != nil {
		return Impersonation{}, err
	}
	if targetID == actorID {
		return Impersonation{}, trellis.Invalid("target", "a user cannot impersonate itself")
	}
	scopes, err := impersonationScopes(in.Scopes)
	if err != nil {
		return Impersonation{}, err
	}
	dur := s.cfg.ImpersonationTTL
	if in.Duration != nil {
		dur = time.Duration(*in.Duration)
		if dur < time.Second {
			return Impersonation{}, trellis.Invalid("duration", "must be at least one second")
		}
		dur = min(dur, s.cfg.MaxImpersonation)
	}
	if p.Impersonator != "" {
		return Impersonation{}, fmt.Errorf("%w: an impersonated session cannot start another impersonation", trellis.ErrForbidden)
	}
	var out Impersonation
	err = s.run(ctx, p, "impersonation.request", func(tx store.Tx, o *op) error {
		org, err := resolveOrg(ctx, tx, in.Organization)
		if errors.Is(err, trellis.ErrNotFound) {
			return trellis.Invalid("organization", "no organization %q", in.Organization)
		} else if err != nil {
			return err
		}
		provider, err := s.isProvider(ctx, p)
		if err != nil {
			return err
		}
		if !provider && (p.Kind != KindUser || p.ID != actorID) {
			return fmt.Errorf("%w: only the actor itself or a provider admin may request an impersonation", trellis.ErrForbidden)
		}
		actor, err := tx.GetUser(ctx, actorID)
		if errors.Is(err, trellis.ErrNotFound) {
			return trellis.Invalid("actor", "no user %q", actorID)
		} else if err != nil {
			return err
		}
		if actor.Status != store.StatusActive {
			return fmt.Errorf("%w: user %s is suspended", trellis.ErrForbidden, actorID)
		}
		actorP := Principal{Kind: KindUser, ID: actorID, Org: p.Org}
		if p.Kind != KindUser {
			actorP.Org = ""
		}
		if ok, err := s.can(ctx, tx, actorP, org, "impersonate"); err != nil {
			return err
		} else if !ok {
			if seen, err := s.visible(ctx, tx, p, org); err != nil {
				return err
			} else if !seen {
				return trellis.Invalid("organization", "no organization %q", in.Organization)
			}
			return fmt.Errorf("%w: user %s may not impersonate in organization %s (provider support or its administrators only)", trellis.ErrForbidden, actorID, org.Slug)
		}
		if m, err := tx.GetMembership(ctx, org.ID, targetID); errors.Is(err, trellis.ErrNotFound) || err == nil && m.Status != store.StatusActive {
			return trellis.Invalid("target", "user %q is not an active member of organization %s", targetID, org.Slug)
		} else if err != nil {
			return err
		}
		if err := s.mayActAsStaff(ctx, org, actorID, targetID); err != nil {
			return err
		}
		if cur, live, err := s.liveImpersonation(ctx, tx, org.ID, actorID, targetID); err != nil {
			return err
		} else if live {
			return trellis.Conflict("impersonation_live", "user %s already impersonates user %s in organization %s (%s): end it first", actorID, targetID, org.Slug, cur.ID)
		}
		im := store.Impersonation{ID: newID("imp"), Org: org.ID, Actor: actorID, Target: targetID, Reason: reason,
			Scopes: scopes, Duration: dur, Status: store.ImpersonationPending, RequestedBy: p.Actor(), CreatedAt: o.now}
		if !org.Policy.ImpersonationApproval {
			start(&im, o.now)
			o.touch(impersonationTuples(im)...)
		}
		if err := tx.InsertImpersonation(ctx, im); err != nil {
			return err
		}
		o.record(org.ID, "impersonation.request", "user:"+targetID, impersonationDetails(im))
		if im.Status == store.ImpersonationActive {
			o.record(org.ID, "impersonation.start", "user:"+targetID, impersonationDetails(im))
		}
		out = s.impersonationView(im)
		return nil
	})
	return out, err
}

// mayActAsStaff refuses to let anyone but a platform admin act as platform
// staff (its admins, support engineers and auditors): through the target the
// actor would reach every organization (support) or the platform itself.
func (s *Service) mayActAsStaff(ctx context.Context, org store.Org, actorID, targetID string) error {
	platform := engine.ObjectRef{Type: "platform", ID: s.cfg.Platform}
	target := Principal{Kind: KindUser, ID: targetID}
	staff := false
	for _, perm := range []string{permManage, "support_access", permViewAudit} {
		ok, err := s.holds(ctx, platform, perm, target)
		if err != nil {
			return err
		}
		if staff = ok; staff {
			break
		}
	}
	if !staff {
		return nil
	}
	if admin, err := s.holds(ctx, platform, permManage, Principal{Kind: KindUser, ID: actorID}); err != nil || admin {
		return err
	}
	return &escalation{org: org.ID, perm: "platform.manage", field: "target",
		err: fmt.Errorf("%w: target: user %s is platform staff; only platform admins may act as it", trellis.ErrForbidden, targetID)}
}

// impersonationFor loads an impersonation for its actor, its target, or a
// caller who can see its organization; anyone else gets 404.
func (s *Service) impersonationFor(ctx context.Context, tx store.Tx, p Principal, id string) (store.Impersonation, store.Org, error) {
	im, err := tx.GetImpersonation(ctx, id)
	if errors.Is(err, trellis.ErrNotFound) {
		return im, store.Org{}, notFound("impersonation", id)
	} else if err != nil {
		return im, store.Org{}, err
	}
	org, err := tx.GetOrg(ctx, im.Org)
	if errors.Is(err, trellis.ErrNotFound) {
		return im, store.Org{}, notFound("impersonation", id)
	} else if err != nil {
		return im, store.Org{}, err
	}
	if p.Kind == KindUser && p.Impersonator == "" && (p.ID == im.Actor || p.ID == im.Target) {
		return im, org, nil
	}
	ok, err := s.can(ctx, tx, p, org, permViewAudit)
	if err == nil && !ok {
		ok, err = s.isProvider(ctx, p)
	}
	if err != nil {
		return im, org, err
	}
	if !ok {
		return im, org, notFound("impersonation", id)
	}
	return im, org, nil
}

// ApproveImpersonation starts a pending impersonation: an administrator of
// the organization itself approves, never the actor.
func (s *Service) ApproveImpersonation(ctx context.Context, p Principal, id string) (Impersonation, error) {
	var out Impersonation
	err := s.run(ctx, p, "impersonation.approve", func(tx store.Tx, o *op) error {
		im, org, err := s.impersonationFor(ctx, tx, p, id)
		if err != nil {
			return err
		}
		if st := s.impersonationStatus(im); st != store.ImpersonationPending {
			return trellis.Conflict("impersonation_"+st, "impersonation %s is %s, not pending", im.ID, st)
		}
		if p.Kind == KindUser && p.ID == im.Actor || p.Impersonator != "" {
			return fmt.Errorf("%w: the actor cannot approve its own impersonation", trellis.ErrForbidden)
		}
		ok, err := s.canApprove(ctx, tx, p, org)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: only an administrator of organization %s itself may approve impersonations of its members", trellis.ErrForbidden, org.ID)
		}
		im.ApprovedBy, im.ApprovedAt = p.Actor(), &o.now
		start(&im, o.now)
		if err := tx.UpdateImpersonation(ctx, im); err != nil {
			return err
		}
		o.touch(impersonationTuples(im)...)
		o.record(org.ID, "impersonation.approve", "user:"+im.Target, impersonationDetails(im))
		o.record(org.ID, "impersonation.start", "user:"+im.Target, impersonationDetails(im))
		out = s.impersonationView(im)
		return nil
	})
	return out, err
}

// EndImpersonation ends an impersonation now (pending ones are withdrawn):
// the actor, the target, or whoever governs the organization may end it.
func (s *Service) EndImpersonation(ctx context.Context, p Principal, id string) (Impersonation, error) {
	var out Impersonation
	err := s.run(ctx, p, "impersonation.end", func(tx store.Tx, o *op) error {
		im, org, err := s.impersonationFor(ctx, tx, p, id)
		if err != nil {
			return err
		}
		if im.Status == store.ImpersonationEnded {
			out = s.impersonationView(im)
			return nil
		}
		party := p.Kind == KindUser && (p.ID == im.Actor || p.ID == im.Target)
		if !party {
			ok, err := s.can(ctx, tx, p, org, permGovern)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%w: only the actor, the target or the organization's administrators may end impersonation %s", trellis.ErrForbidden, im.ID)
			}
		}
		expired := s.impersonationStatus(im) == "expired"
		im.Status, im.EndedBy, im.EndedAt = store.ImpersonationEnded, p.Actor(), &o.now
		if expired {
			im.EndedAt = im.ExpiresAt
		}
		if err := tx.UpdateImpersonation(ctx, im); err != nil {
			return err
		}
		o.filters = append(o.filters, engine.RelationshipFilter{ResourceType: "impersonation", ResourceID: im.ID})
		o.record(org.ID, "impersonation.end", "user:"+im.Target, impersonationDetails(im))
		out = s.impersonationView(im)
		return nil
	})
	return out, err
}

// ImpersonationToken mints an access token for a live impersonation: sub is
// the target, act names the actor, org the organization, imp the
// impersonation itself (the token works only while that one is live); it
// expires no later than the impersonation. Only the actor (or a provider
// admin) gets one.
func (s *Service) ImpersonationToken(ctx context.Context, p Principal, id string) (Token, error) {
	if s.signer == nil {
		return Token{}, fmt.Errorf("%w: token signing is not configured", trellis.ErrUnavailable)
	}
	var out Token
	err := s.run(ctx, p, "impersonation.token", func(tx store.Tx, o *op) error {
		im, org, err := s.impersonationFor(ctx, tx, p, id)
		if err != nil {
			return err
		}
		provider, err := s.isProvider(ctx, p)
		if err != nil {
			return err
		}
		if !provider && (p.Kind != KindUser || p.ID != im.Actor || p.Impersonator != "") {
			return fmt.Errorf("%w: only the actor of impersonation %s gets its tokens", trellis.ErrForbidden, im.ID)
		}
		if st := s.impersonationStatus(im); st != store.ImpersonationActive {
			return trellis.Conflict("impersonation_"+st, "impersonation %s is %s, not active", im.ID, st)
		}
		ttl := min(im.ExpiresAt.Sub(o.now), s.cfg.ImpersonationTokenTTL)
		tok, exp, err := s.signer(ctx, AccessClaims{User: im.Target, Org: org.ID, Actor: im.Actor, Impersonation: im.ID, TTL: ttl.Truncate(time.Second)})
		if err != nil {
			return err
		}
		out = Token{AccessToken: tok, TokenType: "Bearer", ExpiresAt: exp, Subject: "user:" + im.Target, Organization: org.ID, Actor: "user:" + im.Actor}
		o.record(org.ID, "impersonation.token", "user:"+im.Target, map[string]any{"impersonation": im.ID, "actor": "user:" + im.Actor})
		return nil
	})
	return out, err
}

// GetImpersonation returns an impersonation with what was done during it.
func (s *Service) GetImpersonation(ctx context.Context, p Principal, id string) (Impersonation, error) {
	var out Impersonation
	err := s.read(ctx, func(tx store.Tx) error {
		im, _, err := s.impersonationFor(ctx, tx, p, id)
		if err != nil {
			return err
		}
		out = s.impersonationView(im)
		out.Actions, err = s.impersonatedActions(ctx, tx, im)
		return err
	})
	return out, err
}

// ListImpersonations lists the impersonations of an organization's members
// (its auditors and administrators), with what was done during each.
func (s *Service) ListImpersonations(ctx context.Context, p Principal, ref string) ([]Impersonation, error) {
	out := []Impersonation{}
	err := s.read(ctx, func(tx store.Tx) error {
		org, err := s.orgFor(ctx, tx, p, ref, permViewAudit)
		if err != nil {
			return err
		}
		ims, err := tx.ListImpersonations(ctx, org.ID)
		if err != nil {
			return err
		}
		for _, im := range ims {
			v := s.impersonationView(im)
			if v.Actions, err = s.impersonatedActions(ctx, tx, im); err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	return out, err
}

// impersonatedActions are the audited actions taken with im's tokens, on any
// organization's chain.
func (s *Service) impersonatedActions(ctx context.Context, tx store.Tx, im store.Impersonation) ([]ImpersonatedOp, error) {
	if im.StartedAt == nil {
		return nil, nil
	}
	var out []ImpersonatedOp
	since := im.StartedAt.Truncate(time.Microsecond) // the audit log keeps microseconds
	f := store.AuditFilter{AllOrgs: true, Since: &since, Actor: "user:" + im.Target, Limit: 1000}
	for {
		evs, next, err := tx.ListAudit(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, ev := range evs {
			if ev.Impersonator == "user:"+im.Actor && ev.Details["impersonation"] == im.ID {
				out = append(out, ImpersonatedOp{Seq: ev.Seq, At: ev.At, Action: ev.Action, Target: ev.Target, Organization: ev.Organization})
			}
		}
		if len(evs) < f.Limit || next == 0 {
			return out, nil
		}
		f.Cursor = next
	}
}

// liveImpersonation finds the live impersonation of target by actor in org.
func (s *Service) liveImpersonation(ctx context.Context, tx store.Tx, org, actor, target string) (store.Impersonation, bool, error) {
	ims, err := tx.ListImpersonations(ctx, org)
	if err != nil {
		return store.Impersonation{}, false, err
	}
	for _, im := range ims {
		if im.Actor == actor && im.Target == target && s.impersonationStatus(im) == store.ImpersonationActive {
			return im, true, nil
		}
	}
	return store.Impersonation{}, false, nil
}

// impersonationScope reports whether org lies inside the subtree of p's
// impersonation's organization (the token's org is that organization:
// UserPrincipal sets it from the impersonation). Nothing else is in scope:
// not the organizations delegated to the target, not those it reaches
// through other memberships; no organization at all is, if p has none.
func (s *Service) impersonationScope(ctx context.Context, tx store.Tx, p Principal, org store.Org) (bool, error) {
	if p.Org == "" {
		return false, nil
	}
	path, err := s.path(ctx, tx, org)
	if err != nil {
		return false, err
	}
	return slices.Contains(path, p.Org), nil
}

// impersonationAllows asks the graph whether p's impersonation is live and
// allows perm (its caveat holds the scope; its expiry ends it), fully
// consistent so an ended impersonation stops at once. A reading request may
// also pass as read:<perm>, which the read-only scope allows.
func (s *Service) impersonationAllows(ctx context.Context, p Principal, perm string) (bool, error) {
	actor := strings.TrimPrefix(p.Impersonator, "user:")
	ask := func(requested string) (bool, error) {
		r, err := s.checker.Check(ctx, engine.CheckRequest{
			Resource: engine.ObjectRef{Type: "impersonation", ID: p.Impersonation}, Permission: "live",
			Subject: subj("user", actor), Context: map[string]any{"requested": requested},
			Consistency: engine.Consistency{Mode: engine.FullyConsistent},
		})
		if err != nil {
			return false, err
		}
		return r.Allowed(), nil
	}
	ok, err := ask(perm)
	if err != nil || ok || !p.Reading {
		return ok, err
	}
	return ask("read:" + perm)
}
