-- Keyed audit checkpoints (docs/decisions/0011-keyed-audit-checkpoints.md):
-- each event's checkpoint, and its chain head's, signed with a key the
-- database does not hold. Events and heads written before have none ('');
-- verification reports such a chain broken at its first unsigned event.

-- +goose Up

ALTER TABLE audit_events ADD COLUMN checkpoint text NOT NULL DEFAULT '';
ALTER TABLE audit_heads ADD COLUMN checkpoint text NOT NULL DEFAULT '';

-- +goose Down

ALTER TABLE audit_heads DROP COLUMN checkpoint;
ALTER TABLE audit_events DROP COLUMN checkpoint;
