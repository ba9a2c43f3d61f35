-- Token-signing keys shared by every node (store/signingkeys.go). The private
-- key is stored sealed under the configuration's key-encryption key.

-- +goose Up

CREATE TABLE signing_keys (
    id         text COLLATE "C" PRIMARY KEY,
    algorithm  text NOT NULL,
    sealed     bytea NOT NULL,
    created_at timestamptz NOT NULL
);

-- +goose Down

DROP TABLE signing_keys;
