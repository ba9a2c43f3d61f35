-- +goose Up
-- Provider API keys (POST /v1/api-keys): scoped keys of the provider itself,
-- optionally confined to one organization's subtree. Only the secret's
-- SHA-256 is stored.
CREATE TABLE provider_api_keys (
    id              text COLLATE "C" PRIMARY KEY,
    name            text NOT NULL,
    hash            bytea NOT NULL,
    scopes          text[] NOT NULL,
    org             text COLLATE "C" NOT NULL DEFAULT '',
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz,
    last_used_at    timestamptz,
    revoked_at      timestamptz,
    rate_per_second double precision NOT NULL DEFAULT 0,
    burst           integer NOT NULL DEFAULT 0
);

-- +goose Down
DROP TABLE provider_api_keys;
