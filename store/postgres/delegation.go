package postgres

import (
	"context"
	"strings"
	"time"

	"github.com/trellis-iam/trellis/store"
)

// ---- delegations

const delegationSelect = `SELECT id, org, grantee, scopes, subtree, expires_at, status, granted_by, via, reason,
	created_at, approved_by, approved_at, revoked_by, revoked_at FROM delegations `

// The via column keeps the delegations drawn on as space-separated ids
// (delegation ids have no spaces); "" is none.
func scanDelegation(r scanner) (store.Delegation, error) {
	var d store.Delegation
	var via string
	err := r.Scan(&d.ID, &d.Org, &d.Grantee, &d.Scopes, &d.Subtree, &d.ExpiresAt, &d.Status, &d.GrantedBy, &via, &d.Reason,
		&d.CreatedAt, &d.ApprovedBy, &d.ApprovedAt, &d.RevokedBy, &d.RevokedAt)
	d.Via = strings.Fields(via)
	return d, err
}

func (t *tx) GetDelegation(ctx context.Context, id string) (store.Delegation, error) {
	return one(ctx, t, "get delegation", func() error { return notFound("delegation", id) }, scanDelegation,
		delegationSelect+`WHERE id = $1`, id)
}

func (t *tx) ListDelegations(ctx context.Context, org string) ([]store.Delegation, error) {
	return all(ctx, t, "list delegations", scanDelegation, delegationSelect+`WHERE org = $1 ORDER BY id`, org)
}

func (t *tx) DelegationsVia(ctx context.Context, id string) ([]store.Delegation, error) {
	return all(ctx, t, "list delegations granted through a delegation", scanDelegation,
		delegationSelect+`WHERE $1 = ANY(string_to_array(via, ' ')) ORDER BY id`, id)
}

func (t *tx) InsertDelegation(ctx context.Context, d store.Delegation) error {
	_, err := t.exec(ctx, "insert delegation",
		`INSERT INTO delegations (id, org, grantee, scopes, subtree, expires_at, status, granted_by, via, reason,
			created_at, approved_by, approved_at, revoked_by, revoked_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		d.ID, d.Org, d.Grantee, d.Scopes, d.Subtree, d.ExpiresAt, d.Status, d.GrantedBy, strings.Join(d.Via, " "), d.Reason,
		d.CreatedAt, d.ApprovedBy, d.ApprovedAt, d.RevokedBy, d.RevokedAt)
	return err
}

func (t *tx) UpdateDelegation(ctx context.Context, d store.Delegation) error {
	return t.update(ctx, "delegation", d.ID,
		`UPDATE delegations SET org = $2, grantee = $3, scopes = $4, subtree = $5, expires_at = $6, status = $7,
			granted_by = $8, via = $9, reason = $10, created_at = $11, approved_by = $12, approved_at = $13,
			revoked_by = $14, revoked_at = $15
		WHERE id = $1`,
		d.ID, d.Org, d.Grantee, d.Scopes, d.Subtree, d.ExpiresAt, d.Status, d.GrantedBy, strings.Join(d.Via, " "), d.Reason,
		d.CreatedAt, d.ApprovedBy, d.ApprovedAt, d.RevokedBy, d.RevokedAt)
}

// ---- impersonations

// Duration is stored as bigint nanoseconds: exact, unlike an interval
// (microseconds).
const impersonationSelect = `SELECT id, org, actor, target, reason, scopes, duration_ns, status, requested_by, created_at,
	approved_by, approved_at, started_at, expires_at, ended_by, ended_at FROM impersonations `

func scanImpersonation(r scanner) (store.Impersonation, error) {
	var (
		im store.Impersonation
		ns int64
	)
	err := r.Scan(&im.ID, &im.Org, &im.Actor, &im.Target, &im.Reason, &im.Scopes, &ns, &im.Status, &im.RequestedBy, &im.CreatedAt,
		&im.ApprovedBy, &im.ApprovedAt, &im.StartedAt, &im.ExpiresAt, &im.EndedBy, &im.EndedAt)
	im.Duration = time.Duration(ns)
	return im, err
}

func (t *tx) GetImpersonation(ctx context.Context, id string) (store.Impersonation, error) {
	return one(ctx, t, "get impersonation", func() error { return notFound("impersonation", id) }, scanImpersonation,
		impersonationSelect+`WHERE id = $1`, id)
}

func (t *tx) ListImpersonations(ctx context.Context, org string) ([]store.Impersonation, error) {
	return all(ctx, t, "list impersonations", scanImpersonation, impersonationSelect+`WHERE org = $1 ORDER BY id`, org)
}

func (t *tx) InsertImpersonation(ctx context.Context, im store.Impersonation) error {
	_, err := t.exec(ctx, "insert impersonation",
		`INSERT INTO impersonations (id, org, actor, target, reason, scopes, duration_ns, status, requested_by, created_at,
			approved_by, approved_at, started_at, expires_at, ended_by, ended_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		im.ID, im.Org, im.Actor, im.Target, im.Reason, im.Scopes, int64(im.Duration), im.Status, im.RequestedBy, im.CreatedAt,
		im.ApprovedBy, im.ApprovedAt, im.StartedAt, im.ExpiresAt, im.EndedBy, im.EndedAt)
	return err
}

func (t *tx) UpdateImpersonation(ctx context.Context, im store.Impersonation) error {
	return t.update(ctx, "impersonation", im.ID,
		`UPDATE impersonations SET org = $2, actor = $3, target = $4, reason = $5, scopes = $6, duration_ns = $7,
			status = $8, requested_by = $9, created_at = $10, approved_by = $11, approved_at = $12, started_at = $13,
			expires_at = $14, ended_by = $15, ended_at = $16
		WHERE id = $1`,
		im.ID, im.Org, im.Actor, im.Target, im.Reason, im.Scopes, int64(im.Duration), im.Status, im.RequestedBy, im.CreatedAt,
		im.ApprovedBy, im.ApprovedAt, im.StartedAt, im.ExpiresAt, im.EndedBy, im.EndedAt)
}
