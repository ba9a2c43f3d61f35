-- The OpenID provider's sign-in state, shared by every node
-- (store/providergrants.go, docs/decisions/0016-sso-and-oidc-provider.md):
-- authorization requests with their codes, grants, the access and refresh
-- tokens issued under them, and sign-ins waiting for their IdP's answer. Codes and refresh tokens are stored as
-- their SHA-256 only. Reads skip rows past expires_at; the provider sweeps them.

-- +goose Up

CREATE TABLE oauth_auth_requests (
    id          text COLLATE "C" PRIMARY KEY,
    client_id   text NOT NULL,
    state       bytea NOT NULL,
    code_hash   bytea UNIQUE,
    version     bigint NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    redeemed_at timestamptz
);

CREATE INDEX oauth_auth_requests_expires ON oauth_auth_requests (expires_at);

CREATE TABLE oauth_grants (
    id             text COLLATE "C" PRIMARY KEY,
    client_id      text NOT NULL,
    subject        text NOT NULL,
    org            text NOT NULL,
    kind           text NOT NULL,
    key_expires_at timestamptz,
    actor          text NOT NULL,
    impersonation  text NOT NULL,
    created_at     timestamptz NOT NULL,
    revoked_at     timestamptz
);

CREATE INDEX oauth_grants_client ON oauth_grants (client_id, subject);

CREATE TABLE oauth_access_tokens (
    id         text COLLATE "C" PRIMARY KEY,
    grant_id   text NOT NULL,
    scopes     text[] NOT NULL,
    issued_at  timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE INDEX oauth_access_tokens_grant ON oauth_access_tokens (grant_id);
CREATE INDEX oauth_access_tokens_expires ON oauth_access_tokens (expires_at);

CREATE TABLE oauth_refresh_tokens (
    hash       bytea PRIMARY KEY,
    grant_id   text NOT NULL,
    scopes     text[] NOT NULL,
    amr        text[] NOT NULL,
    acr        text NOT NULL,
    auth_time  timestamptz NOT NULL,
    issued_at  timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);

CREATE INDEX oauth_refresh_tokens_grant ON oauth_refresh_tokens (grant_id);
CREATE INDEX oauth_refresh_tokens_expires ON oauth_refresh_tokens (expires_at);

CREATE TABLE oauth_pending_logins (
    hash       bytea PRIMARY KEY,
    sealed     bytea NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE INDEX oauth_pending_logins_expires ON oauth_pending_logins (expires_at);

-- +goose Down

DROP TABLE oauth_pending_logins;
DROP TABLE oauth_refresh_tokens;
DROP TABLE oauth_access_tokens;
DROP TABLE oauth_grants;
DROP TABLE oauth_auth_requests;
