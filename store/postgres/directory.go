package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
)

// limit turns a Page or PendingOutbox limit into a LIMIT parameter:
// LIMIT NULLIF($n, 0) is no limit for 0, which stands for every limit <= 0.
func limit(n int) int64 { return int64(max(n, 0)) }

// ---- organizations

// orgSelect reads organizations with their domains, in listed order, as
// parallel arrays (NULL when there are none).
const orgSelect = `SELECT o.id, o.slug, o.name, o.parent, o.status, o.branding, o.feature_flags,
	o.delegation_approval, o.delegation_required, o.impersonation_approval, o.created_at, o.updated_at,
	d.domains, d.verified, d.tokens, d.methods, d.verified_at
FROM orgs o
LEFT JOIN LATERAL (
	SELECT array_agg(domain ORDER BY position) AS domains,
		array_agg(verified ORDER BY position) AS verified,
		array_agg(token ORDER BY position) AS tokens,
		array_agg(method ORDER BY position) AS methods,
		array_agg(verified_at ORDER BY position) AS verified_at
	FROM org_domains WHERE org = o.id
) d ON true
`

func scanOrg(r scanner) (store.Org, error) {
	var (
		o                        store.Org
		branding, flags          []byte
		domains, tokens, methods []string
		verified                 []bool
		verifiedAt               []pgtype.Timestamptz
	)
	err := r.Scan(&o.ID, &o.Slug, &o.Name, &o.Parent, &o.Status, &branding, &flags,
		&o.Policy.DelegationApproval, &o.Policy.DelegationRequired, &o.Policy.ImpersonationApproval, &o.CreatedAt, &o.UpdatedAt,
		&domains, &verified, &tokens, &methods, &verifiedAt)
	if err != nil {
		return store.Org{}, err
	}
	if len(domains) > 0 {
		o.Domains = make([]store.Domain, len(domains))
		for i := range domains {
			d := store.Domain{Domain: domains[i], Verified: verified[i], Token: tokens[i], Method: methods[i]}
			if verifiedAt[i].Valid {
				at := verifiedAt[i].Time
				d.VerifiedAt = &at
			}
			o.Domains[i] = d
		}
	}
	if err := unmarshalNullable(branding, &o.Branding); err != nil {
		return store.Org{}, fmt.Errorf("organization %q branding: %w", o.ID, err)
	}
	if err := unmarshalNullable(flags, &o.FeatureFlags); err != nil {
		return store.Org{}, fmt.Errorf("organization %q feature flags: %w", o.ID, err)
	}
	return o, nil
}

// getOrgSQL, getUserSQL, getMembershipSQL and groupsOfSQL are also read
// ahead (begin.go).
const getOrgSQL = orgSelect + `WHERE o.id = $1`

func (t *tx) GetOrg(ctx context.Context, id string) (store.Org, error) {
	return one(ctx, t, "get organization", func() error { return notFound("organization", id) }, scanOrg, getOrgSQL, id)
}

func (t *tx) GetOrgBySlug(ctx context.Context, slug string) (store.Org, error) {
	return one(ctx, t, "get organization by slug", func() error { return notFound("organization slug", slug) }, scanOrg,
		orgSelect+`WHERE o.slug = $1`, slug)
}

// ListOrgs matches Query as a plain substring of the lower-cased name or slug
// (strpos: no LIKE wildcards to escape), lower-cased by the database's locale.
func (t *tx) ListOrgs(ctx context.Context, f store.OrgFilter) ([]store.Org, error) {
	return all(ctx, t, "list organizations", scanOrg, orgSelect+`
WHERE ($1::text IS NULL OR o.parent = $1::text)
	AND ($2::text = '' OR strpos(lower(o.name), lower($2::text)) > 0
		OR strpos(lower(o.slug COLLATE "default"), lower($2::text)) > 0)
	AND ($3::text[] IS NULL OR o.id = ANY ($3::text[]))
	AND ($4::text = '' OR o.slug > $4::text)
ORDER BY o.slug
LIMIT NULLIF($5::bigint, 0)`,
		f.Parent, f.Query, f.IDs, f.Page.After, limit(f.Page.Limit))
}

func (t *tx) Children(ctx context.Context, id string) ([]store.Org, error) {
	return all(ctx, t, "list child organizations", scanOrg, orgSelect+`WHERE o.parent = $1 ORDER BY o.id`, id)
}

func (t *tx) OrgByVerifiedDomain(ctx context.Context, domain string) (store.Org, error) {
	return one(ctx, t, "get organization by verified domain", func() error { return notFound("verified domain", domain) }, scanOrg,
		orgSelect+`WHERE o.id = (SELECT org FROM org_domains WHERE domain = $1 AND verified)`, domain)
}

func (t *tx) InsertOrg(ctx context.Context, o store.Org) error {
	branding, flags, err := orgMaps(o)
	if err != nil {
		return err
	}
	if _, err := t.exec(ctx, "insert organization",
		`INSERT INTO orgs (id, slug, name, parent, status, branding, feature_flags,
			delegation_approval, delegation_required, impersonation_approval, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		o.ID, o.Slug, o.Name, o.Parent, o.Status, branding, flags,
		o.Policy.DelegationApproval, o.Policy.DelegationRequired, o.Policy.ImpersonationApproval, o.CreatedAt, o.UpdatedAt); err != nil {
		return err
	}
	return t.insertDomains(ctx, o)
}

func (t *tx) UpdateOrg(ctx context.Context, o store.Org) error {
	branding, flags, err := orgMaps(o)
	if err != nil {
		return err
	}
	n, err := t.exec(ctx, "update organization",
		`UPDATE orgs SET slug = $2, name = $3, parent = $4, status = $5, branding = $6, feature_flags = $7,
			delegation_approval = $8, delegation_required = $9, impersonation_approval = $10, created_at = $11, updated_at = $12
		WHERE id = $1`,
		o.ID, o.Slug, o.Name, o.Parent, o.Status, branding, flags,
		o.Policy.DelegationApproval, o.Policy.DelegationRequired, o.Policy.ImpersonationApproval, o.CreatedAt, o.UpdatedAt)
	if err != nil {
		return err
	}
	if n == 0 {
		return notFound("organization", o.ID)
	}
	// a separate statement before the insert, so a domain the organization
	// keeps verified is gone from the unique index before it comes back
	if _, err := t.exec(ctx, "replace organization domains", `DELETE FROM org_domains WHERE org = $1`, o.ID); err != nil {
		return err
	}
	return t.insertDomains(ctx, o)
}

func (t *tx) DeleteOrg(ctx context.Context, id string) error {
	n, err := t.exec(ctx, "delete organization", `DELETE FROM orgs WHERE id = $1`, id)
	if err != nil {
		return err
	}
	if n == 0 {
		return notFound("organization", id)
	}
	_, err = t.exec(ctx, "delete organization domains", `DELETE FROM org_domains WHERE org = $1`, id)
	return err
}

func (t *tx) insertDomains(ctx context.Context, o store.Org) error {
	if len(o.Domains) == 0 {
		return nil
	}
	n := len(o.Domains)
	domains, tokens, methods := make([]string, n), make([]string, n), make([]string, n)
	verified, verifiedAt := make([]bool, n), make([]pgtype.Timestamptz, n)
	for i, d := range o.Domains {
		domains[i], verified[i], tokens[i], methods[i] = d.Domain, d.Verified, d.Token, d.Method
		if d.VerifiedAt != nil {
			verifiedAt[i] = pgtype.Timestamptz{Time: *d.VerifiedAt, Valid: true}
		}
	}
	_, err := t.exec(ctx, "insert organization domains",
		`INSERT INTO org_domains (org, position, domain, verified, token, method, verified_at)
		SELECT $1, x.n, x.domain, x.verified, x.token, x.method, x.verified_at
		FROM unnest($2::text[], $3::boolean[], $4::text[], $5::text[], $6::timestamptz[])
			WITH ORDINALITY AS x (domain, verified, token, method, verified_at, n)`,
		o.ID, domains, verified, tokens, methods, verifiedAt)
	return err
}

func orgMaps(o store.Org) (branding, flags []byte, err error) {
	if branding, err = marshalNullable(o.Branding); err != nil {
		return nil, nil, fmt.Errorf("store/postgres: organization %q branding: %w", o.ID, err)
	}
	if flags, err = marshalNullable(o.FeatureFlags); err != nil {
		return nil, nil, fmt.Errorf("store/postgres: organization %q feature flags: %w", o.ID, err)
	}
	return branding, flags, nil
}

// ---- users

const userSelect = `SELECT id, email, name, external_id, status, created_at, updated_at FROM users `

func scanUser(r scanner) (store.User, error) {
	var u store.User
	err := r.Scan(&u.ID, &u.Email, &u.Name, &u.ExternalID, &u.Status, &u.CreatedAt, &u.UpdatedAt)
	return u, err
}

const getUserSQL = userSelect + `WHERE id = $1`

func (t *tx) GetUser(ctx context.Context, id string) (store.User, error) {
	return one(ctx, t, "get user", func() error { return notFound("user", id) }, scanUser, getUserSQL, id)
}

func (t *tx) GetUserByEmail(ctx context.Context, email string) (store.User, error) {
	return one(ctx, t, "get user by email", func() error { return notFound("user email", email) }, scanUser,
		userSelect+`WHERE email = $1`, email)
}

func (t *tx) InsertUser(ctx context.Context, u store.User) error {
	return t.writeRow(ctx, "insert user",
		`INSERT INTO users (id, email, name, external_id, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		u.ID, u.Email, u.Name, u.ExternalID, u.Status, u.CreatedAt, u.UpdatedAt)
}

func (t *tx) UpdateUser(ctx context.Context, u store.User) error {
	return t.update(ctx, "user", u.ID,
		`UPDATE users SET email = $2, name = $3, external_id = $4, status = $5, created_at = $6, updated_at = $7 WHERE id = $1`,
		u.ID, u.Email, u.Name, u.ExternalID, u.Status, u.CreatedAt, u.UpdatedAt)
}

// update runs an UPDATE or DELETE of one row by key; none is ErrNotFound.
func (t *tx) update(ctx context.Context, what, key, sql string, args ...any) error {
	n, err := t.exec(ctx, "write "+what, sql, args...)
	if err == nil && n == 0 {
		err = notFound(what, key)
	}
	return err
}

// ---- memberships

const memberSelect = `SELECT org, user_id, roles, status, joined_at, authenticated_via, updated_at FROM memberships `

func scanMember(r scanner) (store.Membership, error) {
	var m store.Membership
	err := r.Scan(&m.Org, &m.User, &m.Roles, &m.Status, &m.JoinedAt, &m.AuthenticatedVia, &m.UpdatedAt)
	return m, err
}

const getMembershipSQL = memberSelect + `WHERE org = $1 AND user_id = $2`

func (t *tx) GetMembership(ctx context.Context, org, user string) (store.Membership, error) {
	return one(ctx, t, "get membership", func() error { return notFound("membership", org+"/"+user) }, scanMember,
		getMembershipSQL, org, user)
}

// PutMembership is queued (tail.go): it goes to the server with the
// transaction's next statement, which reports its failure.
func (t *tx) PutMembership(_ context.Context, m store.Membership) error {
	return t.queueRow("put membership",
		`INSERT INTO memberships (org, user_id, roles, status, joined_at, authenticated_via, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (org, user_id) DO UPDATE SET roles = excluded.roles, status = excluded.status,
			joined_at = excluded.joined_at, authenticated_via = excluded.authenticated_via, updated_at = excluded.updated_at`,
		m.Org, m.User, m.Roles, m.Status, m.JoinedAt, m.AuthenticatedVia, m.UpdatedAt)
}

func (t *tx) DeleteMembership(ctx context.Context, org, user string) error {
	return t.update(ctx, "membership", org+"/"+user, `DELETE FROM memberships WHERE org = $1 AND user_id = $2`, org, user)
}

func (t *tx) ListMembers(ctx context.Context, org string, p store.Page) ([]store.Membership, error) {
	return all(ctx, t, "list members", scanMember,
		memberSelect+`WHERE org = $1 AND ($2::text = '' OR user_id > $2::text) ORDER BY user_id LIMIT NULLIF($3::bigint, 0)`,
		org, p.After, limit(p.Limit))
}

func (t *tx) UserMemberships(ctx context.Context, user string) ([]store.Membership, error) {
	return all(ctx, t, "list user memberships", scanMember, memberSelect+`WHERE user_id = $1 ORDER BY org`, user)
}

// ---- groups

const groupSelect = `SELECT id, org, name, description, roles, created_at, updated_at FROM groups `

func scanGroup(r scanner) (store.Group, error) {
	var g store.Group
	err := r.Scan(&g.ID, &g.Org, &g.Name, &g.Description, &g.Roles, &g.CreatedAt, &g.UpdatedAt)
	return g, err
}

const groupMemberSelect = `SELECT group_id, kind, member_id, added_at FROM group_members `

func scanGroupMember(r scanner) (store.GroupMember, error) {
	var m store.GroupMember
	err := r.Scan(&m.Group, &m.Kind, &m.ID, &m.AddedAt)
	return m, err
}

func (t *tx) GetGroup(ctx context.Context, id string) (store.Group, error) {
	return one(ctx, t, "get group", func() error { return notFound("group", id) }, scanGroup, groupSelect+`WHERE id = $1`, id)
}

func (t *tx) ListGroups(ctx context.Context, org string) ([]store.Group, error) {
	return all(ctx, t, "list groups", scanGroup, groupSelect+`WHERE org = $1 ORDER BY id`, org)
}

func (t *tx) InsertGroup(ctx context.Context, g store.Group) error {
	return t.writeRow(ctx, "insert group",
		`INSERT INTO groups (id, org, name, description, roles, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		g.ID, g.Org, g.Name, g.Description, g.Roles, g.CreatedAt, g.UpdatedAt)
}

func (t *tx) UpdateGroup(ctx context.Context, g store.Group) error {
	return t.update(ctx, "group", g.ID,
		`UPDATE groups SET org = $2, name = $3, description = $4, roles = $5, created_at = $6, updated_at = $7 WHERE id = $1`,
		g.ID, g.Org, g.Name, g.Description, g.Roles, g.CreatedAt, g.UpdatedAt)
}

func (t *tx) DeleteGroup(ctx context.Context, id string) error {
	if err := t.update(ctx, "group", id, `DELETE FROM groups WHERE id = $1`, id); err != nil {
		return err
	}
	_, err := t.exec(ctx, "delete group members",
		`DELETE FROM group_members WHERE group_id = $1 OR (kind = 'group' AND member_id = $1)`, id)
	return err
}

func (t *tx) PutGroupMember(ctx context.Context, m store.GroupMember) error {
	return t.writeRow(ctx, "put group member",
		`INSERT INTO group_members (group_id, kind, member_id, added_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (group_id, kind, member_id) DO UPDATE SET added_at = excluded.added_at`,
		m.Group, m.Kind, m.ID, m.AddedAt)
}

func (t *tx) DeleteGroupMember(ctx context.Context, group, kind, id string) error {
	return t.update(ctx, "group member", group+"/"+kind+":"+id,
		`DELETE FROM group_members WHERE group_id = $1 AND kind = $2 AND member_id = $3`, group, kind, id)
}

func (t *tx) GroupMembers(ctx context.Context, group string) ([]store.GroupMember, error) {
	return all(ctx, t, "list group members", scanGroupMember,
		groupMemberSelect+`WHERE group_id = $1 ORDER BY kind, member_id`, group)
}

const groupsOfSQL = groupMemberSelect + `WHERE kind = $1 AND member_id = $2 ORDER BY group_id`

func (t *tx) GroupsOf(ctx context.Context, kind, id string) ([]store.GroupMember, error) {
	return all(ctx, t, "list groups of a member", scanGroupMember, groupsOfSQL, kind, id)
}

// ---- roles

const roleSelect = `SELECT id, org, key, name, description, permissions, created_at, updated_at FROM roles `

func scanRole(r scanner) (store.Role, error) {
	var role store.Role
	err := r.Scan(&role.ID, &role.Org, &role.Key, &role.Name, &role.Description, &role.Permissions, &role.CreatedAt, &role.UpdatedAt)
	return role, err
}

func (t *tx) GetRole(ctx context.Context, id string) (store.Role, error) {
	return one(ctx, t, "get role", func() error { return notFound("role", id) }, scanRole, roleSelect+`WHERE id = $1`, id)
}

func (t *tx) GetRoleByKey(ctx context.Context, org, key string) (store.Role, error) {
	return one(ctx, t, "get role by key", func() error { return notFound("role key", org+"/"+key) }, scanRole,
		roleSelect+`WHERE org = $1 AND key = $2`, org, key)
}

func (t *tx) ListRoles(ctx context.Context, org string) ([]store.Role, error) {
	return all(ctx, t, "list roles", scanRole, roleSelect+`WHERE org = $1 ORDER BY key`, org)
}

func (t *tx) InsertRole(ctx context.Context, r store.Role) error {
	_, err := t.exec(ctx, "insert role",
		`INSERT INTO roles (id, org, key, name, description, permissions, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		r.ID, r.Org, r.Key, r.Name, r.Description, r.Permissions, r.CreatedAt, r.UpdatedAt)
	return err
}

func (t *tx) UpdateRole(ctx context.Context, r store.Role) error {
	return t.update(ctx, "role", r.ID,
		`UPDATE roles SET org = $2, key = $3, name = $4, description = $5, permissions = $6, created_at = $7, updated_at = $8
		WHERE id = $1`,
		r.ID, r.Org, r.Key, r.Name, r.Description, r.Permissions, r.CreatedAt, r.UpdatedAt)
}

func (t *tx) DeleteRole(ctx context.Context, id string) error {
	return t.update(ctx, "role", id, `DELETE FROM roles WHERE id = $1`, id)
}

// ---- invitations

const invitationSelect = `SELECT id, org, email, roles, token_hash, invited_by, created_at, expires_at,
	accepted_at, accepted_by, revoked_at, permissions, inviter_key, inviter_limit FROM invitations `

func scanInvitation(r scanner) (store.Invitation, error) {
	var inv store.Invitation
	err := r.Scan(&inv.ID, &inv.Org, &inv.Email, &inv.Roles, &inv.TokenHash, &inv.InvitedBy, &inv.CreatedAt, &inv.ExpiresAt,
		&inv.AcceptedAt, &inv.AcceptedBy, &inv.RevokedAt, &inv.Permissions, &inv.InviterKey, &inv.InviterLimit)
	return inv, err
}

func (t *tx) GetInvitation(ctx context.Context, id string) (store.Invitation, error) {
	return one(ctx, t, "get invitation", func() error { return notFound("invitation", id) }, scanInvitation,
		invitationSelect+`WHERE id = $1`, id)
}

func (t *tx) GetInvitationByTokenHash(ctx context.Context, hash []byte) (store.Invitation, error) {
	missing := func() error { return fmt.Errorf("%w: invitation with that token", trellis.ErrNotFound) }
	if len(hash) == 0 { // no token matches an invitation stored without one
		if err := t.usable("get invitation by token", false); err != nil {
			return store.Invitation{}, err
		}
		return store.Invitation{}, missing()
	}
	return one(ctx, t, "get invitation by token", missing, scanInvitation, invitationSelect+`WHERE token_hash = $1`, hash)
}

func (t *tx) ListInvitations(ctx context.Context, org string) ([]store.Invitation, error) {
	return all(ctx, t, "list invitations", scanInvitation, invitationSelect+`WHERE org = $1 ORDER BY id`, org)
}

func (t *tx) InsertInvitation(ctx context.Context, inv store.Invitation) error {
	_, err := t.exec(ctx, "insert invitation",
		`INSERT INTO invitations (id, org, email, roles, token_hash, invited_by, created_at, expires_at,
			accepted_at, accepted_by, revoked_at, permissions, inviter_key, inviter_limit)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
		inv.ID, inv.Org, inv.Email, inv.Roles, inv.TokenHash, inv.InvitedBy, inv.CreatedAt, inv.ExpiresAt,
		inv.AcceptedAt, inv.AcceptedBy, inv.RevokedAt, inv.Permissions, inv.InviterKey, inv.InviterLimit)
	return err
}

func (t *tx) UpdateInvitation(ctx context.Context, inv store.Invitation) error {
	return t.update(ctx, "invitation", inv.ID,
		`UPDATE invitations SET org = $2, email = $3, roles = $4, token_hash = $5, invited_by = $6, created_at = $7,
			expires_at = $8, accepted_at = $9, accepted_by = $10, revoked_at = $11, permissions = $12, inviter_key = $13,
			inviter_limit = $14
		WHERE id = $1`,
		inv.ID, inv.Org, inv.Email, inv.Roles, inv.TokenHash, inv.InvitedBy, inv.CreatedAt, inv.ExpiresAt,
		inv.AcceptedAt, inv.AcceptedBy, inv.RevokedAt, inv.Permissions, inv.InviterKey, inv.InviterLimit)
}

// ---- service accounts and API keys

const accountSelect = `SELECT id, org, name, description, roles, created_at, updated_at FROM service_accounts `

func scanAccount(r scanner) (store.ServiceAccount, error) {
	var sa store.ServiceAccount
	err := r.Scan(&sa.ID, &sa.Org, &sa.Name, &sa.Description, &sa.Roles, &sa.CreatedAt, &sa.UpdatedAt)
	return sa, err
}

const keySelect = `SELECT id, service_account, org, hash, permissions, created_at, expires_at, last_used_at, revoked_at
	FROM api_keys `

func scanKey(r scanner) (store.APIKey, error) {
	var k store.APIKey
	err := r.Scan(&k.ID, &k.ServiceAccount, &k.Org, &k.Hash, &k.Permissions, &k.CreatedAt, &k.ExpiresAt, &k.LastUsedAt, &k.RevokedAt)
	return k, err
}

func (t *tx) GetServiceAccount(ctx context.Context, id string) (store.ServiceAccount, error) {
	return one(ctx, t, "get service account", func() error { return notFound("service account", id) }, scanAccount,
		accountSelect+`WHERE id = $1`, id)
}

func (t *tx) ListServiceAccounts(ctx context.Context, org string) ([]store.ServiceAccount, error) {
	return all(ctx, t, "list service accounts", scanAccount, accountSelect+`WHERE org = $1 ORDER BY id`, org)
}

func (t *tx) InsertServiceAccount(ctx context.Context, sa store.ServiceAccount) error {
	_, err := t.exec(ctx, "insert service account",
		`INSERT INTO service_accounts (id, org, name, description, roles, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		sa.ID, sa.Org, sa.Name, sa.Description, sa.Roles, sa.CreatedAt, sa.UpdatedAt)
	return err
}

func (t *tx) UpdateServiceAccount(ctx context.Context, sa store.ServiceAccount) error {
	return t.update(ctx, "service account", sa.ID,
		`UPDATE service_accounts SET org = $2, name = $3, description = $4, roles = $5, created_at = $6, updated_at = $7
		WHERE id = $1`,
		sa.ID, sa.Org, sa.Name, sa.Description, sa.Roles, sa.CreatedAt, sa.UpdatedAt)
}

func (t *tx) DeleteServiceAccount(ctx context.Context, id string) error {
	if err := t.update(ctx, "service account", id, `DELETE FROM service_accounts WHERE id = $1`, id); err != nil {
		return err
	}
	_, err := t.exec(ctx, "delete API keys", `DELETE FROM api_keys WHERE service_account = $1`, id)
	return err
}

func (t *tx) GetAPIKey(ctx context.Context, id string) (store.APIKey, error) {
	return one(ctx, t, "get API key", func() error { return notFound("API key", id) }, scanKey, keySelect+`WHERE id = $1`, id)
}

func (t *tx) ListAPIKeys(ctx context.Context, serviceAccount string) ([]store.APIKey, error) {
	return all(ctx, t, "list API keys", scanKey, keySelect+`WHERE service_account = $1 ORDER BY id`, serviceAccount)
}

func (t *tx) InsertAPIKey(ctx context.Context, k store.APIKey) error {
	_, err := t.exec(ctx, "insert API key",
		`INSERT INTO api_keys (id, service_account, org, hash, permissions, created_at, expires_at, last_used_at, revoked_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		k.ID, k.ServiceAccount, k.Org, k.Hash, k.Permissions, k.CreatedAt, k.ExpiresAt, k.LastUsedAt, k.RevokedAt)
	return err
}

func (t *tx) UpdateAPIKey(ctx context.Context, k store.APIKey) error {
	return t.update(ctx, "API key", k.ID,
		`UPDATE api_keys SET service_account = $2, org = $3, hash = $4, permissions = $5, created_at = $6,
			expires_at = $7, last_used_at = $8, revoked_at = $9
		WHERE id = $1`,
		k.ID, k.ServiceAccount, k.Org, k.Hash, k.Permissions, k.CreatedAt, k.ExpiresAt, k.LastUsedAt, k.RevokedAt)
}

// ---- JSON columns

// marshalNullable encodes v as JSON, or SQL NULL when v is a nil map or slice.
func marshalNullable[T any, M ~map[string]T](m M) ([]byte, error) {
	if m == nil {
		return nil, nil
	}
	return json.Marshal(m)
}

// unmarshalNullable decodes b into v; NULL leaves v nil.
func unmarshalNullable(b []byte, v any) error {
	if b == nil {
		return nil
	}
	return json.Unmarshal(b, v)
}
