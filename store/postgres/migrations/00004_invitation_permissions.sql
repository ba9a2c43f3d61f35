-- An invitation keeps the permissions its roles carried when it was sent:
-- acceptance grants no more than that (a role widened meanwhile needs a new
-- invitation). NULL: sent before this column existed — checked as before.

-- +goose Up

ALTER TABLE invitations ADD COLUMN permissions text[];

-- +goose Down

ALTER TABLE invitations DROP COLUMN permissions;
