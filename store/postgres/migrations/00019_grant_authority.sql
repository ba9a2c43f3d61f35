-- Grants that take effect later are weighed, when they take effect, against
-- the authority of whoever made them, limited as the credential they used is
-- limited then: an invitation keeps the API key its inviter sent it with, an
-- SSO connection keeps who last configured it (and with which key), since its
-- role mapping is that person's grant, not its creator's. The limit is the
-- permission list the caller acted with (NULL: none), which a token narrowed
-- from its key (client credentials' scope) may hold below the key's own. A
-- SCIM token keeps
-- the key it was minted with and dies with it. Empty key: a user's token or
-- the admin key, which carry no limit of their own.

-- +goose Up

ALTER TABLE invitations
    ADD COLUMN inviter_key   text NOT NULL DEFAULT '',
    ADD COLUMN inviter_limit text[];

ALTER TABLE sso_connections
    ADD COLUMN configured_by    text NOT NULL DEFAULT '',
    ADD COLUMN configured_key   text NOT NULL DEFAULT '',
    ADD COLUMN configured_limit text[];

UPDATE sso_connections SET configured_by = created_by;

ALTER TABLE scim_tokens ADD COLUMN created_key text NOT NULL DEFAULT '';

-- +goose Down

ALTER TABLE scim_tokens DROP COLUMN created_key;

ALTER TABLE sso_connections
    DROP COLUMN configured_limit,
    DROP COLUMN configured_key,
    DROP COLUMN configured_by;

ALTER TABLE invitations DROP COLUMN inviter_limit, DROP COLUMN inviter_key;
