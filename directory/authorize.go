package directory

import (
	"context"
	"fmt"
	"slices"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// Organization permissions the directory checks (system.zed).
const (
	permManage        = "manage"
	permGovern        = "govern" // manage that survives suspension, to reactivate
	permManageMembers = "manage_members"
	permManageRoles   = "manage_roles"
	permManageBrand   = "manage_branding"
	permViewAudit     = "view_audit"
	permAccess        = "access"
	permAdminister    = "administer" // any administration, full or by delegated scope
)

// isProvider: the provider key, or a user who administers the platform.
func (s *Service) isProvider(ctx context.Context, p Principal) (bool, error) {
	switch p.Kind {
	case KindProvider:
		return true, nil
	case KindUser:
		if p.Org != "" {
			return false, nil // an org-scoped token acts inside its org only
		}
		return s.holds(ctx, engine.ObjectRef{Type: "platform", ID: s.cfg.Platform}, permManage, p)
	}
	return false, nil
}

func (s *Service) requireProvider(ctx context.Context, p Principal) error {
	ok, err := s.isProvider(ctx, p)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: only provider admins may do this", trellis.ErrForbidden)
	}
	return nil
}

func (s *Service) holds(ctx context.Context, res engine.ObjectRef, perm string, p Principal) (bool, error) {
	r, err := s.checker.Check(ctx, engine.CheckRequest{Resource: res, Permission: perm, Subject: p.Subject()})
	if err != nil {
		return false, err
	}
	return r.Allowed(), nil
}

// keyAllows reports whether an API key's permission list covers perm: manage
// covers every scope (and administer), and any permission covers access.
func keyAllows(list []string, perm string) bool {
	if list == nil {
		return true
	}
	return slices.Contains(list, perm) || slices.Contains(list, permManage) || (perm == permAccess && len(list) > 0)
}

// inScope reports whether org lies inside the principal's organization scope:
// the token's organization and its subtree, plus the organizations delegated
// to the principal (a partner's admin acting for the partner administers the
// customers that delegated to it). An impersonation reaches its
// organization's subtree only (impersonationScope).
func (s *Service) inScope(ctx context.Context, tx store.Tx, p Principal, org store.Org) (bool, error) {
	if p.Impersonation != "" {
		return s.impersonationScope(ctx, tx, p, org)
	}
	if p.Org == "" {
		return true, nil
	}
	path, err := s.path(ctx, tx, org)
	if err != nil {
		return false, err
	}
	if slices.Contains(path, p.Org) {
		return true, nil
	}
	d, err := s.delegationOnPath(ctx, tx, p, path, nil, false)
	return d != nil, err
}

// can reports whether p holds perm on org (graph check, key limit, org scope).
func (s *Service) can(ctx context.Context, tx store.Tx, p Principal, org store.Org, perm string) (bool, error) {
	if p.Kind == KindProvider {
		return true, nil
	}
	if ok, err := s.inScope(ctx, tx, p, org); err != nil || !ok {
		return false, err
	}
	if !keyAllows(p.Permissions, perm) {
		return false, nil
	}
	if p.Impersonation != "" {
		if ok, err := s.impersonationAllows(ctx, p, perm); err != nil || !ok {
			return false, err
		}
	}
	if ok, err := s.isProvider(ctx, p); err != nil || ok {
		return ok, err
	}
	return s.holds(ctx, orgRef(org.ID), perm, p)
}

// visible: the caller may know org exists — it can access it or administer
// it (fully, or through a delegated scope). Seeing is not limited by an
// impersonation's scope (the target's own visibility applies).
func (s *Service) visible(ctx context.Context, tx store.Tx, p Principal, org store.Org) (bool, error) {
	if p.Impersonation != "" { // but it is confined to the impersonation's subtree
		if ok, err := s.impersonationScope(ctx, tx, p, org); err != nil || !ok {
			return false, err
		}
	}
	p.Impersonation = ""
	ok, err := s.can(ctx, tx, p, org, permAccess)
	if err != nil || ok {
		return ok, err
	}
	return s.can(ctx, tx, p, org, permAdminister)
}

// authorize requires perm on org: 404 when the caller cannot even see the
// organization (never reveal another org's objects), 403 when it can.
func (s *Service) authorize(ctx context.Context, tx store.Tx, p Principal, org store.Org, perm string) error {
	ok, err := s.can(ctx, tx, p, org, perm)
	if err != nil || ok {
		return err
	}
	seen, err := s.visible(ctx, tx, p, org)
	if err != nil {
		return err
	}
	if !seen {
		return notFound("organization", org.ID)
	}
	return fmt.Errorf("%w: %s on organization %s is required", trellis.ErrForbidden, perm, org.ID)
}

// escalation is a refused attempt to grant what the caller does not hold; run
// records it on the organization's audit chain after the transaction is rolled back.
type escalation struct {
	org, perm, field string
	err              error
}

func (e *escalation) Error() string { return e.err.Error() }
func (e *escalation) Unwrap() error { return e.err }

// noEscalation refuses to hand out permissions the caller does not hold on org.
// Adding members (the member role's access) is what manage_members is for, so
// holding manage_members is enough to grant access.
func (s *Service) noEscalation(ctx context.Context, tx store.Tx, p Principal, org store.Org, perms []string, field string) error {
	for _, perm := range perms {
		ok, err := s.can(ctx, tx, p, org, perm)
		if err == nil && !ok && perm == permAccess {
			ok, err = s.can(ctx, tx, p, org, permManageMembers)
		}
		if err != nil {
			return err
		}
		if !ok {
			return &escalation{org: org.ID, perm: perm, field: field,
				err: fmt.Errorf("%w: %s: cannot grant %s, which the caller does not hold on organization %s", trellis.ErrForbidden, field, perm, org.ID)}
		}
	}
	return nil
}

// IsProvider reports whether p administers the platform (the provider key, or
// a user holding platform admin).
func (s *Service) IsProvider(ctx context.Context, p Principal) (bool, error) {
	return s.isProvider(ctx, p)
}
