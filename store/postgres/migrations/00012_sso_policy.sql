-- Sign-in policy per organization (store/federation.go SSOPolicy): allowed
-- methods, required assurance (acr), session max age. No row: no restriction.

-- +goose Up

CREATE TABLE sso_policies (
    org                text COLLATE "C" PRIMARY KEY,
    allowed_methods    text[],
    required_acr       text[],
    session_max_age_ns bigint NOT NULL,  -- exact, as impersonations' duration
    updated_at         timestamptz NOT NULL
);

-- +goose Down

DROP TABLE sso_policies;
