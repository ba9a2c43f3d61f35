package directory

import (
	"context"
	"strconv"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/audit"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// AuditQuery filters an audit listing.
type AuditQuery struct {
	Organization string // GET /v1/audit only
	Since, Until *time.Time
	Actor        string
	Action       string
	Cursor       string
	PageSize     int
}

func (q AuditQuery) filter() (store.AuditFilter, int, error) {
	size, err := pageSize(q.PageSize)
	if err != nil {
		return store.AuditFilter{}, 0, err
	}
	var after int64
	if c, err := decodeCursor("cursor", q.Cursor); err != nil {
		return store.AuditFilter{}, 0, err
	} else if c != "" {
		if after, err = strconv.ParseInt(c, 10, 64); err != nil || after < 0 {
			return store.AuditFilter{}, 0, trellis.Invalid("cursor", "is not a cursor this server issued")
		}
	}
	return store.AuditFilter{Since: q.Since, Until: q.Until, Actor: q.Actor, Action: q.Action, Cursor: after, Limit: size}, size, nil
}

// ListAudit pages through one organization's log (view_audit holders).
func (s *Service) ListAudit(ctx context.Context, p Principal, ref string, q AuditQuery) ([]audit.Event, string, error) {
	f, size, err := q.filter()
	if err != nil {
		return nil, "", err
	}
	var events []audit.Event
	var next int64
	err = s.read(ctx, func(tx store.Tx) error {
		org, err := s.orgFor(ctx, tx, p, ref, permViewAudit)
		if err != nil {
			return err
		}
		f.Org = org.ID
		events, next, err = tx.ListAudit(ctx, f)
		return err
	})
	return pageOf(events, next, size, err)
}

// ListAllAudit pages through every organization's events (provider auditors).
func (s *Service) ListAllAudit(ctx context.Context, p Principal, q AuditQuery) ([]audit.Event, string, error) {
	f, size, err := q.filter()
	if err != nil {
		return nil, "", err
	}
	if err := s.requireAuditor(ctx, p); err != nil {
		return nil, "", err
	}
	var events []audit.Event
	var next int64
	err = s.read(ctx, func(tx store.Tx) error {
		if q.Organization != "" {
			org, err := resolveOrg(ctx, tx, q.Organization)
			if err != nil {
				return err
			}
			f.Org = org.ID
		} else {
			f.AllOrgs = true
		}
		events, next, err = tx.ListAudit(ctx, f)
		return err
	})
	return pageOf(events, next, size, err)
}

func (s *Service) requireAuditor(ctx context.Context, p Principal) error {
	if p.Kind == KindUser && p.Org == "" {
		if ok, err := s.holds(ctx, engine.ObjectRef{Type: "platform", ID: s.cfg.Platform}, permViewAudit, p); err != nil || ok {
			return err
		}
	}
	return s.requireProvider(ctx, p)
}

func pageOf(events []audit.Event, next int64, size int, err error) ([]audit.Event, string, error) {
	if err != nil {
		return nil, "", err
	}
	if events == nil {
		events = []audit.Event{}
	}
	cursor := ""
	if len(events) == size && next > 0 {
		cursor = encodeCursor(strconv.FormatInt(next, 10))
	}
	return events, cursor, nil
}

// VerifyAudit walks one organization's chain and its keyed checkpoints.
func (s *Service) VerifyAudit(ctx context.Context, p Principal, ref string) (audit.Verification, error) {
	var out audit.Verification
	err := s.read(ctx, func(tx store.Tx) error {
		org, err := s.orgFor(ctx, tx, p, ref, permViewAudit)
		if err != nil {
			return err
		}
		out, err = s.verifyChain(ctx, tx, org.ID)
		return err
	})
	return out, err
}

// VerifyPlatformAudit walks the platform chain (events on no organization,
// e.g. user creation) and its keyed checkpoints: provider admins and platform
// auditors only, as GET /v1/audit.
func (s *Service) VerifyPlatformAudit(ctx context.Context, p Principal) (audit.Verification, error) {
	if err := s.requireAuditor(ctx, p); err != nil {
		return audit.Verification{}, err
	}
	var out audit.Verification
	err := s.read(ctx, func(tx store.Tx) (err error) {
		out, err = s.verifyChain(ctx, tx, "")
		return err
	})
	return out, err
}

// verifyChain checks org's chain ("" = the platform chain) against its head
// and the audit key's checkpoints (ADR 0011).
func (s *Service) verifyChain(ctx context.Context, tx store.Tx, org string) (audit.Verification, error) {
	events, err := tx.AuditChain(ctx, org)
	if err != nil {
		return audit.Verification{}, err
	}
	head, err := tx.AuditHead(ctx, org)
	if err != nil {
		return audit.Verification{}, err
	}
	return s.cfg.AuditKey.Verify(org, events, head), nil
}

// AuditChain returns one organization's whole chain, for NDJSON export.
func (s *Service) AuditChain(ctx context.Context, p Principal, ref string) ([]audit.Event, error) {
	var out []audit.Event
	err := s.read(ctx, func(tx store.Tx) error {
		org, err := s.orgFor(ctx, tx, p, ref, permViewAudit)
		if err != nil {
			return err
		}
		out, err = tx.AuditChain(ctx, org.ID)
		return err
	})
	return out, err
}
