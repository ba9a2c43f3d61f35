-- Sign-in (federation, store/federation.go): organizations' SSO connections,
-- the applications that sign users in through Trellis, and the identity links
-- from (connection, IdP subject) to a user.
--
-- As in 00001: keys that listings sort by are COLLATE "C", there are no
-- foreign keys (the directory owns the cascades), and nullable arrays hold
-- Go's nil. The OIDC client secret is sealed (AES-GCM) before it gets here;
-- an application's secret is kept as its SHA-256 only.

-- +goose Up

CREATE TABLE sso_connections (
    id                 text COLLATE "C" PRIMARY KEY,
    org                text COLLATE "C" NOT NULL,
    type               text NOT NULL,  -- oidc | saml
    name               text NOT NULL,
    issuer             text NOT NULL,
    client_id          text NOT NULL,
    sealed_secret      bytea,
    metadata_xml       text NOT NULL,
    role_mapping       jsonb NOT NULL,
    jit                boolean NOT NULL,
    enabled            boolean NOT NULL,
    share_with_sub_orgs boolean NOT NULL,
    recreate_removed   boolean NOT NULL,
    created_by         text NOT NULL,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);
CREATE INDEX sso_connections_org_idx ON sso_connections (org, id);

CREATE TABLE applications (
    id             text COLLATE "C" PRIMARY KEY,
    client_id      text COLLATE "C" NOT NULL UNIQUE,
    secret_hash    bytea,
    name           text NOT NULL,
    type           text NOT NULL,  -- web | spa | native
    redirect_uris  text[],
    post_logout    text[],
    required_acr   text NOT NULL,
    created_by     text NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);

CREATE TABLE sso_identities (
    connection      text COLLATE "C" NOT NULL,
    subject         text COLLATE "C" NOT NULL,
    user_id         text COLLATE "C" NOT NULL,
    org             text COLLATE "C" NOT NULL,
    roles           text[],
    created_at      timestamptz NOT NULL,
    last_sign_in_at timestamptz NOT NULL,
    PRIMARY KEY (connection, subject)
);

-- +goose Down

DROP TABLE sso_identities;
DROP TABLE applications;
DROP TABLE sso_connections;
