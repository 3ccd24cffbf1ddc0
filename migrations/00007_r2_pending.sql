-- +goose Up
-- R2 sync state per file instead of per file_id row. Marking eleven
-- file_bot_ids rows synced after every write cost eleven non-HOT updates
-- (the partial "pending" index) and a join the planner sent through every
-- pending row; now a file needs a write while it has a row here, and a
-- write removes that row only if no file_id changed since it was read.
--
-- gen comes from a sequence, not a per-row counter: a row deleted and
-- inserted again must never repeat a gen an older, slower writer still
-- holds, or that writer's delete would drop the newer change.
CREATE SEQUENCE r2_pending_gen;
CREATE TABLE r2_pending (
    file_unique_id text        PRIMARY KEY REFERENCES files (file_unique_id) ON DELETE CASCADE,
    gen            bigint      NOT NULL DEFAULT nextval('r2_pending_gen'),
    changed_at     timestamptz NOT NULL DEFAULT now()
);
INSERT INTO r2_pending (file_unique_id, changed_at)
SELECT file_unique_id, max(updated_at) FROM file_bot_ids
WHERE r2_synced_at IS NULL GROUP BY file_unique_id;
DROP INDEX file_bot_ids_r2_pending;
ALTER TABLE file_bot_ids DROP COLUMN r2_synced_at;

-- +goose Down
ALTER TABLE file_bot_ids ADD COLUMN r2_synced_at timestamptz;
UPDATE file_bot_ids b SET r2_synced_at = now()
WHERE NOT EXISTS (SELECT 1 FROM r2_pending p WHERE p.file_unique_id = b.file_unique_id);
CREATE INDEX file_bot_ids_r2_pending ON file_bot_ids (updated_at) WHERE r2_synced_at IS NULL;
DROP TABLE r2_pending;
DROP SEQUENCE r2_pending_gen;
