package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/trellis-iam/trellis/store"
)

// ---- SCIM tokens

const scimTokenSelect = `SELECT id, org, name, hash, created_by, permissions, created_at, expires_at, last_used_at, revoked_at,
	created_key FROM scim_tokens `

func scanSCIMToken(r scanner) (store.SCIMToken, error) {
	var k store.SCIMToken
	err := r.Scan(&k.ID, &k.Org, &k.Name, &k.Hash, &k.CreatedBy, &k.Permissions, &k.CreatedAt, &k.ExpiresAt, &k.LastUsedAt, &k.RevokedAt, &k.CreatedKey)
	return k, err
}

func (t *tx) GetSCIMToken(ctx context.Context, id string) (store.SCIMToken, error) {
	return one(ctx, t, "get SCIM token", func() error { return notFound("SCIM token", id) }, scanSCIMToken,
		scimTokenSelect+`WHERE id = $1`, id)
}

func (t *tx) ListSCIMTokens(ctx context.Context, org string) ([]store.SCIMToken, error) {
	return all(ctx, t, "list SCIM tokens", scanSCIMToken, scimTokenSelect+`WHERE org = $1 ORDER BY id`, org)
}

func (t *tx) InsertSCIMToken(ctx context.Context, k store.SCIMToken) error {
	_, err := t.exec(ctx, "insert SCIM token",
		`INSERT INTO scim_tokens (id, org, name, hash, created_by, permissions, created_at, expires_at, last_used_at, revoked_at,
			created_key)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		k.ID, k.Org, k.Name, k.Hash, k.CreatedBy, k.Permissions, k.CreatedAt, k.ExpiresAt, k.LastUsedAt, k.RevokedAt, k.CreatedKey)
	return err
}

func (t *tx) UpdateSCIMToken(ctx context.Context, k store.SCIMToken) error {
	return t.update(ctx, "SCIM token", k.ID,
		`UPDATE scim_tokens SET org = $2, name = $3, hash = $4, created_by = $5, permissions = $6, created_at = $7,
			expires_at = $8, last_used_at = $9, revoked_at = $10, created_key = $11
		WHERE id = $1`,
		k.ID, k.Org, k.Name, k.Hash, k.CreatedBy, k.Permissions, k.CreatedAt, k.ExpiresAt, k.LastUsedAt, k.RevokedAt, k.CreatedKey)
}

// ---- mappings

type mappingJSON struct {
	Group string   `json:"group"`
	Roles []string `json:"roles"`
}

func (t *tx) SCIMMappings(ctx context.Context, org string) ([]store.SCIMMapping, error) {
	rows, err := all(ctx, t, "get SCIM mappings", func(r scanner) ([]byte, error) {
		var b []byte
		err := r.Scan(&b)
		return b, err
	}, `SELECT mappings FROM scim_mappings WHERE org = $1`, org)
	if err != nil || len(rows) == 0 {
		return nil, err
	}
	var ms []mappingJSON
	if err := json.Unmarshal(rows[0], &ms); err != nil {
		return nil, fmt.Errorf("SCIM mappings of %q: %w", org, err)
	}
	out := make([]store.SCIMMapping, len(ms))
	for i, m := range ms {
		out[i] = store.SCIMMapping{Group: m.Group, Roles: m.Roles}
	}
	return out, nil
}

func (t *tx) PutSCIMMappings(ctx context.Context, org string, m []store.SCIMMapping) error {
	if len(m) == 0 {
		_, err := t.exec(ctx, "delete SCIM mappings", `DELETE FROM scim_mappings WHERE org = $1`, org)
		return err
	}
	ms := make([]mappingJSON, len(m))
	for i, x := range m {
		ms[i] = mappingJSON{Group: x.Group, Roles: x.Roles}
	}
	b, err := json.Marshal(ms)
	if err != nil {
		return err
	}
	_, err = t.exec(ctx, "put SCIM mappings",
		`INSERT INTO scim_mappings (org, mappings) VALUES ($1, $2) ON CONFLICT (org) DO UPDATE SET mappings = EXCLUDED.mappings`, org, b)
	return err
}

// ---- provisioned resources

const scimResourceSelect = `SELECT org, kind, id, name, external_id, version, doc, roles, active, members, pending, created_at, updated_at
	FROM scim_resources `

func scanSCIMResource(r scanner) (store.SCIMResource, error) {
	var x store.SCIMResource
	err := r.Scan(&x.Org, &x.Kind, &x.ID, &x.Name, &x.ExternalID, &x.Version, &x.Doc, &x.Roles, &x.Active, &x.Members, &x.Pending, &x.CreatedAt, &x.UpdatedAt)
	return x, err
}

func (t *tx) GetSCIMResource(ctx context.Context, org, kind, id string) (store.SCIMResource, error) {
	return one(ctx, t, "get SCIM resource", func() error { return notFound("SCIM "+kind, id) }, scanSCIMResource,
		scimResourceSelect+`WHERE org = $1 AND kind = $2 AND id = $3`, org, kind, id)
}

func (t *tx) SCIMResourceByName(ctx context.Context, org, kind, name string) (store.SCIMResource, error) {
	return one(ctx, t, "get SCIM resource by name", func() error { return notFound("SCIM "+kind+" name", name) }, scanSCIMResource,
		scimResourceSelect+`WHERE org = $1 AND kind = $2 AND lower(name) = lower($3)`, org, kind, name)
}

func (t *tx) ListSCIMResources(ctx context.Context, org, kind string, p store.Page) ([]store.SCIMResource, error) {
	return all(ctx, t, "list SCIM resources", scanSCIMResource,
		scimResourceSelect+`WHERE org = $1 AND kind = $2 AND id > $3 ORDER BY id LIMIT NULLIF($4, 0)`, org, kind, p.After, limit(p.Limit))
}

func (t *tx) PutSCIMResource(ctx context.Context, r store.SCIMResource) error {
	return t.writeRow(ctx, "put SCIM resource",
		`INSERT INTO scim_resources (org, kind, id, name, external_id, version, doc, roles, active, members, pending, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
		ON CONFLICT (org, kind, id) DO UPDATE SET name = EXCLUDED.name, external_id = EXCLUDED.external_id,
			version = EXCLUDED.version, doc = EXCLUDED.doc, roles = EXCLUDED.roles, active = EXCLUDED.active, members = EXCLUDED.members, pending = EXCLUDED.pending,
			created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at`,
		r.Org, r.Kind, r.ID, r.Name, r.ExternalID, r.Version, r.Doc, r.Roles, r.Active, r.Members, r.Pending, r.CreatedAt, r.UpdatedAt)
}

func (t *tx) DeleteSCIMResource(ctx context.Context, org, kind, id string) error {
	return t.update(ctx, "SCIM "+kind, id, `DELETE FROM scim_resources WHERE org = $1 AND kind = $2 AND id = $3`, org, kind, id)
}

// ---- sync status

func (t *tx) RecordSCIMRequest(ctx context.Context, r store.SCIMRequest) error {
	failed := int64(0)
	if r.Status >= 400 {
		failed = 1
	}
	if _, err := t.exec(ctx, "record SCIM request",
		`INSERT INTO scim_sync (org, resource, method, status, scim_type, detail, at, requests, errors)
		VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8)
		ON CONFLICT (org, resource) DO UPDATE SET method = EXCLUDED.method, status = EXCLUDED.status,
			scim_type = EXCLUDED.scim_type, detail = EXCLUDED.detail, at = EXCLUDED.at,
			requests = scim_sync.requests + 1, errors = scim_sync.errors + EXCLUDED.errors`,
		r.Org, r.Resource, r.Method, r.Status, r.ScimType, r.Detail, r.At, failed); err != nil {
		return err
	}
	if failed == 0 {
		return nil
	}
	if _, err := t.exec(ctx, "record SCIM error",
		`INSERT INTO scim_errors (org, resource, method, status, scim_type, detail, at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		r.Org, r.Resource, r.Method, r.Status, r.ScimType, r.Detail, r.At); err != nil {
		return err
	}
	_, err := t.exec(ctx, "trim SCIM errors",
		`DELETE FROM scim_errors WHERE org = $1 AND position <= (
			SELECT position FROM scim_errors WHERE org = $1 ORDER BY position DESC OFFSET $2 LIMIT 1)`, r.Org, store.SCIMErrorsKept)
	return err
}

func (t *tx) SCIMSyncStatus(ctx context.Context, org string) ([]store.SCIMSync, []store.SCIMRequest, error) {
	sync, err := all(ctx, t, "SCIM sync status", func(r scanner) (store.SCIMSync, error) {
		var s store.SCIMSync
		err := r.Scan(&s.Last.Org, &s.Last.Resource, &s.Last.Method, &s.Last.Status, &s.Last.ScimType, &s.Last.Detail, &s.Last.At, &s.Requests, &s.Errors)
		return s, err
	}, `SELECT org, resource, method, status, scim_type, detail, at, requests, errors FROM scim_sync WHERE org = $1 ORDER BY resource`, org)
	if err != nil {
		return nil, nil, err
	}
	errs, err := all(ctx, t, "SCIM errors", func(r scanner) (store.SCIMRequest, error) {
		var x store.SCIMRequest
		err := r.Scan(&x.Org, &x.Resource, &x.Method, &x.Status, &x.ScimType, &x.Detail, &x.At)
		return x, err
	}, `SELECT org, resource, method, status, scim_type, detail, at FROM scim_errors WHERE org = $1 ORDER BY position DESC`, org)
	return sync, errs, err
}

// LookupSCIM sends its three reads, with what is queued, in one round trip.
func (t *tx) LookupSCIM(ctx context.Context, q store.SCIMLookup) (store.SCIMFound, error) {
	const op = "look up SCIM rows"
	var out store.SCIMFound
	if err := t.usable(op, false); err != nil {
		return out, err
	}
	lower := func(names []string) []string {
		out := make([]string, len(names))
		for i, n := range names {
			out[i] = strings.ToLower(n)
		}
		return out
	}
	b := &pgx.Batch{}
	for _, s := range t.queued {
		b.Queue(s.sql, s.args...)
	}
	queued := t.queued
	t.queued = nil
	b.Queue(scimResourceSelect+`WHERE org = $1 AND (kind = 'User' AND lower(name) = ANY($2::text[]) OR kind = 'Group' AND lower(name) = ANY($3::text[]))`,
		q.Org, lower(q.UserNames), lower(q.GroupNames))
	b.Queue(userSelect+`WHERE email = ANY($1::text[])`, q.Emails)
	b.Queue(memberSelect+`WHERE org = $1 AND user_id = ANY($2::text[])`, q.Org, q.Members)
	br := t.tx.SendBatch(ctx, b)
	fail := func(op string, err error) (store.SCIMFound, error) {
		_ = br.Close()
		return store.SCIMFound{}, t.fail(op, err)
	}
	for _, s := range queued {
		if _, err := br.Exec(); err != nil {
			return fail(s.op, err)
		}
	}
	var err error
	if out.Resources, err = collect(br, scanSCIMResource); err != nil {
		return fail(op, err)
	}
	if out.Users, err = collect(br, scanUser); err != nil {
		return fail(op, err)
	}
	if out.Memberships, err = collect(br, scanMember); err != nil {
		return fail(op, err)
	}
	if err := br.Close(); err != nil {
		return store.SCIMFound{}, t.fail(op, err)
	}
	return out, nil
}

// collect scans every row of a batch's next query.
func collect[T any](br pgx.BatchResults, scan func(scanner) (T, error)) ([]T, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (T, error) { return scan(r) })
}
