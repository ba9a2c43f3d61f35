-- The relationship changelog (docs/decisions/0017-access-review.md): every
-- transaction committed to the graph, whatever wrote it, as the tuples it
-- touched and deleted (with expiries and caveats), recorded from the engine's
-- watch stream; and the watch cursor it runs through, moved in the same
-- transaction as the changes it covers.

-- +goose Up

CREATE TABLE relationship_changes (
    seq      bigserial PRIMARY KEY,
    at       timestamptz NOT NULL,
    updates  jsonb NOT NULL,
    baseline boolean NOT NULL DEFAULT false
);

CREATE INDEX relationship_changes_at ON relationship_changes (at);

CREATE TABLE changelog_cursor (
    id     integer PRIMARY KEY CHECK (id = 1),
    cursor text NOT NULL
);

-- +goose Down

DROP TABLE changelog_cursor;
DROP TABLE relationship_changes;
