-- SCIM 2.0 provisioning per organization (ADR 0015): the identity
-- provider's bearer tokens (hashed), its group → roles mappings, what it
-- provisioned (one row per user or group, with its representation and the
-- roles provisioning granted), and the sync status.

-- +goose Up

CREATE TABLE scim_tokens (
    id           text COLLATE "C" PRIMARY KEY,
    org          text COLLATE "C" NOT NULL,
    name         text NOT NULL,
    hash         bytea,
    created_by   text NOT NULL,
    permissions  text[],
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX scim_tokens_org_idx ON scim_tokens (org, id);

CREATE TABLE scim_mappings (
    org      text COLLATE "C" PRIMARY KEY,
    mappings jsonb NOT NULL
);

CREATE TABLE scim_resources (
    org         text COLLATE "C" NOT NULL,
    kind        text COLLATE "C" NOT NULL,
    id          text COLLATE "C" NOT NULL,
    name        text NOT NULL,
    external_id text NOT NULL,
    version     bigint NOT NULL,
    doc         bytea,
    roles       text[],
    active      boolean NOT NULL,
    members     text[],
    pending     text NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (org, kind, id)
);
CREATE UNIQUE INDEX scim_resources_name_idx ON scim_resources (org, kind, lower(name));

CREATE TABLE scim_sync (
    org       text COLLATE "C" NOT NULL,
    resource  text COLLATE "C" NOT NULL,
    method    text NOT NULL,
    status    integer NOT NULL,
    scim_type text NOT NULL,
    detail    text NOT NULL,
    at        timestamptz NOT NULL,
    requests  bigint NOT NULL,
    errors    bigint NOT NULL,
    PRIMARY KEY (org, resource)
);

CREATE TABLE scim_errors (
    position  bigserial PRIMARY KEY,
    org       text COLLATE "C" NOT NULL,
    resource  text NOT NULL,
    method    text NOT NULL,
    status    integer NOT NULL,
    scim_type text NOT NULL,
    detail    text NOT NULL,
    at        timestamptz NOT NULL
);
CREATE INDEX scim_errors_org_idx ON scim_errors (org, position);

-- +goose Down

DROP TABLE scim_errors;
DROP TABLE scim_sync;
DROP TABLE scim_resources;
DROP TABLE scim_mappings;
DROP TABLE scim_tokens;
