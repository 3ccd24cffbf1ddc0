-- +goose Up
-- post_sightings is now drained in large batches by one index_drain job at
-- a time (under one advisory lock key, see jobs.SightingsLockKey) instead of
-- by one job per post under a per-post key, so the key function goes.
DROP FUNCTION post_lock_key(bigint, bigint);

-- A sighting the index cannot record (its data breaks a constraint) stays
-- here with the error, for an admin to see, instead of failing every round
-- it would be part of.
ALTER TABLE post_sightings ADD COLUMN error text;

-- +goose Down
ALTER TABLE post_sightings DROP COLUMN error;
-- +goose StatementBegin
CREATE FUNCTION post_lock_key(chat bigint, msg bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT hashtextextended(chat::text || ':' || msg::text, 7) $$;
-- +goose StatementEnd
