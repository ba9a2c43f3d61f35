-- SAML connections whose IdP metadata is fetched from a URL (store/federation.go):
-- where from, the last successful fetch, and the last failure's reason (a
-- failed refresh keeps the metadata it had).

-- +goose Up

ALTER TABLE sso_connections
    ADD COLUMN metadata_url        text NOT NULL DEFAULT '',
    ADD COLUMN metadata_fetched_at timestamptz,
    ADD COLUMN metadata_error      text NOT NULL DEFAULT '';

-- +goose Down

ALTER TABLE sso_connections
    DROP COLUMN metadata_error,
    DROP COLUMN metadata_fetched_at,
    DROP COLUMN metadata_url;
