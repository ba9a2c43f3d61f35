-- Applied authorization schemas (store/schemaversions.go): every node serves
-- the newest, and any past version can be read back.

-- +goose Up

CREATE TABLE schema_versions (
    version    integer PRIMARY KEY CHECK (version > 0),
    app_text   text NOT NULL,
    text       text NOT NULL,
    applied_at timestamptz NOT NULL,
    applied_by text NOT NULL,
    written_at text NOT NULL
);

-- +goose Down

DROP TABLE schema_versions;
