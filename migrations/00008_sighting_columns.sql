-- +goose Up
-- A sighting keeps the fields the index records instead of the raw update
-- (about 700 bytes, eleven times per post): a third of the row, a third of
-- the write-ahead log per post, and no JSON decoding in the drain. Rows
-- written before this keep update_json and are still decoded from it.
ALTER TABLE post_sightings
    ALTER COLUMN update_json DROP NOT NULL,
    ADD COLUMN file_unique_id text,
    ADD COLUMN file_id        text,
    ADD COLUMN file_type      text,
    ADD COLUMN file_name      text,
    ADD COLUMN file_size      bigint,
    ADD COLUMN mime_type      text,
    ADD COLUMN dc_id          integer,
    ADD COLUMN caption        text,
    ADD COLUMN duration       integer,
    ADD COLUMN width          integer,
    ADD COLUMN height         integer,
    ADD CONSTRAINT post_sightings_has_file
        CHECK (update_json IS NOT NULL OR (file_unique_id IS NOT NULL AND file_id IS NOT NULL));

-- +goose Down
-- Rows in the new form are turned back into minimal channel_post updates,
-- so a rolled-back release still indexes them.
UPDATE post_sightings SET update_json = convert_to(json_build_object(
    'update_id', 0,
    'channel_post', json_build_object(
        'message_id', message_id, 'date', 0, 'caption', caption,
        'chat', json_build_object('id', chat_id, 'type', 'channel'),
        file_type, json_strip_nulls(json_build_object(
            'file_id', file_id, 'file_unique_id', file_unique_id, 'file_name', file_name,
            'mime_type', mime_type, 'file_size', file_size,
            'duration', duration, 'width', width, 'height', height))))::text, 'UTF8')
WHERE update_json IS NULL;
ALTER TABLE post_sightings
    DROP CONSTRAINT post_sightings_has_file,
    DROP COLUMN file_unique_id, DROP COLUMN file_id, DROP COLUMN file_type,
    DROP COLUMN file_name, DROP COLUMN file_size, DROP COLUMN mime_type,
    DROP COLUMN dc_id, DROP COLUMN caption, DROP COLUMN duration,
    DROP COLUMN width, DROP COLUMN height,
    ALTER COLUMN update_json SET NOT NULL;
