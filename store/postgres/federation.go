package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/trellis-iam/trellis/store"
)

// ---- SSO connections

const connectionSelect = `SELECT id, org, type, name, issuer, client_id, sealed_secret, metadata_xml, role_mapping,
	jit, enabled, share_with_sub_orgs, recreate_removed, created_by, created_at, updated_at,
	metadata_url, metadata_fetched_at, metadata_error, configured_by, configured_key, configured_limit FROM sso_connections `

func scanConnection(r scanner) (store.Connection, error) {
	var (
		c       store.Connection
		mapping []byte
	)
	err := r.Scan(&c.ID, &c.Org, &c.Type, &c.Name, &c.Issuer, &c.ClientID, &c.SealedSecret, &c.MetadataXML, &mapping,
		&c.JIT, &c.Enabled, &c.ShareWithSubOrgs, &c.RecreateRemoved, &c.CreatedBy, &c.CreatedAt, &c.UpdatedAt,
		&c.MetadataURL, &c.MetadataFetchedAt, &c.MetadataError, &c.ConfiguredBy, &c.ConfiguredKey, &c.ConfiguredLimit)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(mapping, &c.RoleMapping); err != nil {
		return c, fmt.Errorf("store/postgres: connection %s role mapping: %w", c.ID, err)
	}
	return c, nil
}

func connectionArgs(c store.Connection) ([]any, error) {
	mapping, err := json.Marshal(c.RoleMapping)
	if err != nil {
		return nil, fmt.Errorf("store/postgres: connection role mapping: %w", err)
	}
	return []any{c.ID, c.Org, c.Type, c.Name, c.Issuer, c.ClientID, c.SealedSecret, c.MetadataXML, mapping,
		c.JIT, c.Enabled, c.ShareWithSubOrgs, c.RecreateRemoved, c.CreatedBy, c.CreatedAt, c.UpdatedAt,
		c.MetadataURL, c.MetadataFetchedAt, c.MetadataError, c.ConfiguredBy, c.ConfiguredKey, c.ConfiguredLimit}, nil
}

func (t *tx) GetConnection(ctx context.Context, id string) (store.Connection, error) {
	return one(ctx, t, "get connection", func() error { return notFound("connection", id) }, scanConnection,
		connectionSelect+`WHERE id = $1`, id)
}

func (t *tx) ListConnections(ctx context.Context, org string) ([]store.Connection, error) {
	return all(ctx, t, "list connections", scanConnection, connectionSelect+`WHERE org = $1 ORDER BY id`, org)
}

func (t *tx) InsertConnection(ctx context.Context, c store.Connection) error {
	args, err := connectionArgs(c)
	if err != nil {
		return err
	}
	_, err = t.exec(ctx, "insert connection",
		`INSERT INTO sso_connections (id, org, type, name, issuer, client_id, sealed_secret, metadata_xml, role_mapping,
			jit, enabled, share_with_sub_orgs, recreate_removed, created_by, created_at, updated_at,
			metadata_url, metadata_fetched_at, metadata_error, configured_by, configured_key, configured_limit)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)`, args...)
	return err
}

func (t *tx) UpdateConnection(ctx context.Context, c store.Connection) error {
	args, err := connectionArgs(c)
	if err != nil {
		return err
	}
	return t.update(ctx, "connection", c.ID,
		`UPDATE sso_connections SET org = $2, type = $3, name = $4, issuer = $5, client_id = $6, sealed_secret = $7,
			metadata_xml = $8, role_mapping = $9, jit = $10, enabled = $11, share_with_sub_orgs = $12,
			recreate_removed = $13, created_by = $14, created_at = $15, updated_at = $16,
			metadata_url = $17, metadata_fetched_at = $18, metadata_error = $19, configured_by = $20, configured_key = $21,
			configured_limit = $22
		WHERE id = $1`, args...)
}

func (t *tx) DeleteConnection(ctx context.Context, id string) error {
	if err := t.update(ctx, "connection", id, `DELETE FROM sso_connections WHERE id = $1`, id); err != nil {
		return err
	}
	_, err := t.exec(ctx, "delete connection identities", `DELETE FROM sso_identities WHERE connection = $1`, id)
	return err
}

// ---- applications

const applicationSelect = `SELECT id, client_id, secret_hash, name, type, redirect_uris, post_logout, required_acr,
	created_by, created_at, updated_at FROM applications `

func scanApplication(r scanner) (store.Application, error) {
	var a store.Application
	err := r.Scan(&a.ID, &a.ClientID, &a.SecretHash, &a.Name, &a.Type, &a.RedirectURIs, &a.PostLogout, &a.RequiredACR,
		&a.CreatedBy, &a.CreatedAt, &a.UpdatedAt)
	return a, err
}

func (t *tx) GetApplication(ctx context.Context, id string) (store.Application, error) {
	return one(ctx, t, "get application", func() error { return notFound("application", id) }, scanApplication,
		applicationSelect+`WHERE id = $1`, id)
}

func (t *tx) GetApplicationByClientID(ctx context.Context, clientID string) (store.Application, error) {
	return one(ctx, t, "get application", func() error { return notFound("application", clientID) }, scanApplication,
		applicationSelect+`WHERE client_id = $1`, clientID)
}

func (t *tx) ListApplications(ctx context.Context) ([]store.Application, error) {
	return all(ctx, t, "list applications", scanApplication, applicationSelect+`ORDER BY id`)
}

func (t *tx) InsertApplication(ctx context.Context, a store.Application) error {
	_, err := t.exec(ctx, "insert application",
		`INSERT INTO applications (id, client_id, secret_hash, name, type, redirect_uris, post_logout, required_acr,
			created_by, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		a.ID, a.ClientID, a.SecretHash, a.Name, a.Type, a.RedirectURIs, a.PostLogout, a.RequiredACR,
		a.CreatedBy, a.CreatedAt, a.UpdatedAt)
	return err
}

func (t *tx) UpdateApplication(ctx context.Context, a store.Application) error {
	return t.update(ctx, "application", a.ID,
		`UPDATE applications SET client_id = $2, secret_hash = $3, name = $4, type = $5, redirect_uris = $6,
			post_logout = $7, required_acr = $8, created_by = $9, created_at = $10, updated_at = $11
		WHERE id = $1`,
		a.ID, a.ClientID, a.SecretHash, a.Name, a.Type, a.RedirectURIs, a.PostLogout, a.RequiredACR,
		a.CreatedBy, a.CreatedAt, a.UpdatedAt)
}

func (t *tx) DeleteApplication(ctx context.Context, id string) error {
	return t.update(ctx, "application", id, `DELETE FROM applications WHERE id = $1`, id)
}

// ---- identity links

func (t *tx) GetSSOIdentity(ctx context.Context, connection, subject string) (store.SSOIdentity, error) {
	return one(ctx, t, "get identity", func() error { return notFound("identity", connection+"/"+subject) },
		func(r scanner) (store.SSOIdentity, error) {
			var id store.SSOIdentity
			err := r.Scan(&id.Connection, &id.Subject, &id.User, &id.Org, &id.Roles, &id.CreatedAt, &id.LastSignInAt)
			return id, err
		},
		`SELECT connection, subject, user_id, org, roles, created_at, last_sign_in_at FROM sso_identities
		WHERE connection = $1 AND subject = $2`, connection, subject)
}

func (t *tx) PutSSOIdentity(ctx context.Context, id store.SSOIdentity) error {
	_, err := t.exec(ctx, "put identity",
		`INSERT INTO sso_identities (connection, subject, user_id, org, roles, created_at, last_sign_in_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (connection, subject) DO UPDATE SET user_id = $3, org = $4, roles = $5, last_sign_in_at = $7`,
		id.Connection, id.Subject, id.User, id.Org, id.Roles, id.CreatedAt, id.LastSignInAt)
	return err
}

// ---- sign-in policies

func (t *tx) GetSSOPolicy(ctx context.Context, org string) (store.SSOPolicy, error) {
	return one(ctx, t, "get sign-in policy", func() error { return notFound("sign-in policy", org) },
		func(r scanner) (store.SSOPolicy, error) {
			var (
				p  store.SSOPolicy
				ns int64
			)
			err := r.Scan(&p.Org, &p.AllowedMethods, &p.RequiredACR, &ns, &p.UpdatedAt)
			p.SessionMaxAge = time.Duration(ns)
			return p, err
		},
		`SELECT org, allowed_methods, required_acr, session_max_age_ns, updated_at FROM sso_policies WHERE org = $1`, org)
}

func (t *tx) PutSSOPolicy(ctx context.Context, p store.SSOPolicy) error {
	_, err := t.exec(ctx, "put sign-in policy",
		`INSERT INTO sso_policies (org, allowed_methods, required_acr, session_max_age_ns, updated_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (org) DO UPDATE SET allowed_methods = $2, required_acr = $3, session_max_age_ns = $4, updated_at = $5`,
		p.Org, p.AllowedMethods, p.RequiredACR, int64(p.SessionMaxAge), p.UpdatedAt)
	return err
}
