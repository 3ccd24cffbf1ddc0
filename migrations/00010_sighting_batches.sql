-- +goose Up
-- The intake writes the channel-file sightings of one commit as one row of
-- arrays (element i of every array is sighting i, in the columns of
-- post_sightings) instead of a row each. Eleven bots seeing a post were
-- eleven heap tuples and index entries to insert, then eleven to delete and
-- vacuum; now a commit's sightings, however many, are one of each. The
-- drain takes rows in arrival order.
--
-- A sighting is no longer unique by (chat, message, bot) here: a
-- re-delivered update is a second copy, which indexing (idempotent)
-- absorbs. post_sightings stays for rows written before this and for
-- sightings kept aside with their error.
--
-- toast_tuple_target keeps rows of up to ~8 KB (about forty sightings)
-- inline and uncompressed (the default, 2 KB, would compress a commit of
-- a dozen), so the intake's commit does no compression work.
CREATE TABLE sighting_batches (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at     timestamptz NOT NULL DEFAULT now(),
    n               integer     NOT NULL CHECK (n > 0),
    chat_ids        bigint[]    NOT NULL,
    message_ids     bigint[]    NOT NULL,
    bot_ids         bigint[]    NOT NULL,
    file_unique_ids text[]      NOT NULL,
    file_ids        text[]      NOT NULL,
    file_types      text[]      NOT NULL,
    file_names      text[]      NOT NULL,
    file_sizes      bigint[]    NOT NULL,
    mime_types      text[]      NOT NULL,
    dc_ids          integer[]   NOT NULL,
    captions        text[]      NOT NULL,
    durations       integer[]   NOT NULL,
    widths          integer[]   NOT NULL,
    heights         integer[]   NOT NULL,
    CHECK (cardinality(chat_ids) = n AND cardinality(message_ids) = n AND cardinality(bot_ids) = n
       AND cardinality(file_unique_ids) = n AND cardinality(file_ids) = n AND cardinality(file_types) = n
       AND cardinality(file_names) = n AND cardinality(file_sizes) = n AND cardinality(mime_types) = n
       AND cardinality(dc_ids) = n AND cardinality(captions) = n AND cardinality(durations) = n
       AND cardinality(widths) = n AND cardinality(heights) = n)
) WITH (toast_tuple_target = 8160);

-- +goose Down
-- Batches not yet drained become post_sightings rows again.
INSERT INTO post_sightings (chat_id, message_id, bot_id, file_unique_id, file_id, file_type, file_name,
                            file_size, mime_type, dc_id, caption, duration, width, height)
SELECT s.* FROM sighting_batches b,
    unnest(b.chat_ids, b.message_ids, b.bot_ids, b.file_unique_ids, b.file_ids, b.file_types, b.file_names,
           b.file_sizes, b.mime_types, b.dc_ids, b.captions, b.durations, b.widths, b.heights) AS s
ON CONFLICT DO NOTHING;
DROP TABLE sighting_batches;
