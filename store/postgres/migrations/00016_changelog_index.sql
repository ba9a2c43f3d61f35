-- The relationship changelog's index by object (docs/decisions/0017-access-review.md):
-- each recorded change's updates grouped by the object they are about (their
-- resource), so that an answer at a past time reads only the changes of the
-- objects it reaches, never every tenant's. Compaction folds the changes up to
-- the retention boundary into one baseline (see store.ChangelogIndex); the
-- index rows of the changes it replaces go with them.

-- +goose Up

CREATE TABLE relationship_change_objects (
    seq     bigint NOT NULL REFERENCES relationship_changes (seq) ON DELETE CASCADE,
    object  text NOT NULL,
    updates jsonb NOT NULL,
    PRIMARY KEY (object, seq)
);

CREATE INDEX relationship_change_objects_seq ON relationship_change_objects (seq);
CREATE INDEX relationship_changes_baselines ON relationship_changes (seq) WHERE baseline;

-- the changes recorded before this migration
INSERT INTO relationship_change_objects (seq, object, updates)
SELECT c.seq, (u->'resource'->>'type') || ':' || (u->'resource'->>'id'), jsonb_agg(u ORDER BY n)
FROM relationship_changes c, jsonb_array_elements(c.updates) WITH ORDINALITY AS e(u, n)
GROUP BY c.seq, (u->'resource'->>'type') || ':' || (u->'resource'->>'id');

-- +goose Down

DROP INDEX relationship_changes_baselines;
DROP TABLE relationship_change_objects;
