-- The directory, the audit log and the outbox (store/store.go).
--
-- Keys that listings sort by are COLLATE "C", so rows order byte-wise like the
-- memory store whatever the database's locale. There are no foreign keys: the
-- contract deletes exactly what each Delete* names (DeleteOrg removes the
-- organization row and its domains, not its members or groups), and the
-- directory owns the cascades. Nullable arrays, JSON and bytea hold Go's nil.

-- +goose Up

CREATE TABLE orgs (
    id            text COLLATE "C" PRIMARY KEY,
    slug          text COLLATE "C" NOT NULL CONSTRAINT orgs_slug_key UNIQUE,
    name          text NOT NULL,
    parent        text COLLATE "C" NOT NULL, -- '' for a top-level organization
    status        text NOT NULL,
    branding      jsonb,                     -- {"key": "value"}
    feature_flags jsonb,                     -- {"flag": true}
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX orgs_parent_idx ON orgs (parent, id);

-- An organization's domains, in the order it lists them. A verified domain
-- belongs to one organization at most.
CREATE TABLE org_domains (
    org         text COLLATE "C" NOT NULL,
    position    integer NOT NULL,
    domain      text COLLATE "C" NOT NULL,
    verified    boolean NOT NULL,
    token       text NOT NULL,
    method      text NOT NULL,
    verified_at timestamptz,
    PRIMARY KEY (org, position)
);
CREATE UNIQUE INDEX org_domains_verified_key ON org_domains (domain) WHERE verified;

CREATE TABLE users (
    id          text COLLATE "C" PRIMARY KEY,
    email       text COLLATE "C" NOT NULL CONSTRAINT users_email_key UNIQUE,
    name        text NOT NULL,
    external_id text NOT NULL,
    status      text NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE memberships (
    org               text COLLATE "C" NOT NULL,
    user_id           text COLLATE "C" NOT NULL,
    roles             text[],
    status            text NOT NULL,
    joined_at         timestamptz NOT NULL,
    authenticated_via text NOT NULL,
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (org, user_id)
);
CREATE INDEX memberships_user_idx ON memberships (user_id, org);

CREATE TABLE groups (
    id          text COLLATE "C" PRIMARY KEY,
    org         text COLLATE "C" NOT NULL,
    name        text NOT NULL,
    description text NOT NULL,
    roles       text[],
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX groups_org_idx ON groups (org, id);

CREATE TABLE group_members (
    group_id  text COLLATE "C" NOT NULL,
    kind      text COLLATE "C" NOT NULL, -- user | group
    member_id text COLLATE "C" NOT NULL,
    added_at  timestamptz NOT NULL,
    PRIMARY KEY (group_id, kind, member_id)
);
CREATE INDEX group_members_member_idx ON group_members (kind, member_id, group_id);

CREATE TABLE roles (
    id          text COLLATE "C" PRIMARY KEY,
    org         text COLLATE "C" NOT NULL,
    key         text COLLATE "C" NOT NULL,
    name        text NOT NULL,
    description text NOT NULL,
    permissions text[],
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    CONSTRAINT roles_org_key_key UNIQUE (org, key)
);

CREATE TABLE invitations (
    id          text COLLATE "C" PRIMARY KEY,
    org         text COLLATE "C" NOT NULL,
    email       text NOT NULL,
    roles       text[],
    token_hash  bytea,
    invited_by  text NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    accepted_at timestamptz,
    accepted_by text NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX invitations_org_idx ON invitations (org, id);
CREATE UNIQUE INDEX invitations_token_hash_key ON invitations (token_hash) WHERE token_hash <> '';

CREATE TABLE service_accounts (
    id          text COLLATE "C" PRIMARY KEY,
    org         text COLLATE "C" NOT NULL,
    name        text NOT NULL,
    description text NOT NULL,
    roles       text[],
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX service_accounts_org_idx ON service_accounts (org, id);

CREATE TABLE api_keys (
    id              text COLLATE "C" PRIMARY KEY,
    service_account text COLLATE "C" NOT NULL,
    org             text COLLATE "C" NOT NULL,
    hash            bytea,
    permissions     text[],
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz,
    last_used_at    timestamptz,
    revoked_at      timestamptz
);
CREATE INDEX api_keys_service_account_idx ON api_keys (service_account, id);

-- Every chain's events in one log. position is the global append order and
-- the ListAudit cursor; writers are serialized, so it grows in commit order
-- (a rolled-back append leaves a gap). org is the chain the event was appended
-- to ('' = the platform chain) and organization the event's own field: equal,
-- unless a test played attacker with TamperAudit. Nothing forces (org, seq)
-- unique, for the same reason; AppendAudit checks seq against audit_heads.
CREATE TABLE audit_events (
    position     bigserial PRIMARY KEY,
    org          text COLLATE "C" NOT NULL,
    seq          bigint NOT NULL,
    at           timestamptz NOT NULL,
    actor        text NOT NULL,
    impersonator text NOT NULL,
    action       text NOT NULL,
    target       text NOT NULL,
    organization text COLLATE "C" NOT NULL,
    details      jsonb,
    prev_hash    text NOT NULL,
    hash         text NOT NULL
);
CREATE INDEX audit_events_chain_idx ON audit_events (org, position);
CREATE INDEX audit_events_organization_idx ON audit_events (organization, position);

-- The newest (seq, hash) of each chain, so that deleting the tail shows.
CREATE TABLE audit_heads (
    org  text COLLATE "C" PRIMARY KEY,
    seq  bigint NOT NULL,
    hash text NOT NULL
);

-- The graph half of each directory operation, applied to the engine in seq
-- order. Applied entries stay, as the relationship changelog.
CREATE TABLE outbox (
    seq            bigserial PRIMARY KEY,
    action         text NOT NULL,
    updates        jsonb, -- [{"op", "resource", "relation", "subject", "caveat", "expiresAt"}]
    delete_filters jsonb, -- [{"resourceType", "resourceId", "relation", "subject"}]
    created_at     timestamptz NOT NULL,
    applied_at     timestamptz,
    revision       text NOT NULL
);
CREATE INDEX outbox_pending_idx ON outbox (seq) WHERE applied_at IS NULL;

-- +goose Down

DROP TABLE outbox;
DROP TABLE audit_heads;
DROP TABLE audit_events;
DROP TABLE api_keys;
DROP TABLE service_accounts;
DROP TABLE invitations;
DROP TABLE roles;
DROP TABLE group_members;
DROP TABLE groups;
DROP TABLE memberships;
DROP TABLE users;
DROP TABLE org_domains;
DROP TABLE orgs;
