-- Delegated administration and impersonation (store/store.go): each
-- organization's policy on both, and the delegation and impersonation rows.
--
-- As in 00001: keys that listings sort by are COLLATE "C", there are no
-- foreign keys (the directory owns the cascades), and nullable arrays hold
-- Go's nil.

-- +goose Up

-- OrgPolicy; organizations that exist already keep every switch off.
ALTER TABLE orgs
    ADD COLUMN delegation_approval    boolean NOT NULL DEFAULT false,
    ADD COLUMN delegation_required    boolean NOT NULL DEFAULT false,
    ADD COLUMN impersonation_approval boolean NOT NULL DEFAULT false;

CREATE TABLE delegations (
    id          text COLLATE "C" PRIMARY KEY,
    org         text COLLATE "C" NOT NULL,
    grantee     text NOT NULL,            -- user:<id> | group:<id> | organization:<id>#admin
    scopes      text[],
    subtree     boolean NOT NULL,
    expires_at  timestamptz,
    status      text NOT NULL,            -- pending | active | revoked
    granted_by  text NOT NULL,
    via         text COLLATE "C" NOT NULL, -- '' when granted in the grantor's own right
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL,
    approved_by text NOT NULL,
    approved_at timestamptz,
    revoked_by  text NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX delegations_org_idx ON delegations (org, id);
CREATE INDEX delegations_via_idx ON delegations (via, id);

CREATE TABLE impersonations (
    id           text COLLATE "C" PRIMARY KEY,
    org          text COLLATE "C" NOT NULL,
    actor        text NOT NULL,
    target       text NOT NULL,
    reason       text NOT NULL,
    scopes       text[],
    duration_ns  bigint NOT NULL, -- time.Duration: nanoseconds, exactly
    status       text NOT NULL,   -- pending | active | ended
    requested_by text NOT NULL,
    created_at   timestamptz NOT NULL,
    approved_by  text NOT NULL,
    approved_at  timestamptz,
    started_at   timestamptz,
    expires_at   timestamptz,
    ended_by     text NOT NULL,
    ended_at     timestamptz
);
CREATE INDEX impersonations_org_idx ON impersonations (org, id);

-- +goose Down

DROP TABLE impersonations;
DROP TABLE delegations;
ALTER TABLE orgs
    DROP COLUMN impersonation_approval,
    DROP COLUMN delegation_required,
    DROP COLUMN delegation_approval;
