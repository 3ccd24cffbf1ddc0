-- +goose Up
-- The channel file index (package index). Postgres is the source of truth;
-- the R2 JSON objects are rebuilt from these rows.

-- One row per distinct Telegram file, keyed by file_unique_id (the same for
-- every bot). Metadata is from the first post that showed us the file.
CREATE TABLE files (
    file_unique_id   text        PRIMARY KEY,
    file_name        text        NOT NULL DEFAULT '',
    file_size        bigint      NOT NULL DEFAULT 0,
    mime_type        text        NOT NULL DEFAULT '',
    file_type        text        NOT NULL CHECK (file_type IN ('video', 'audio', 'document', 'animation')),
    dc_id            integer     NOT NULL DEFAULT 0,
    caption          text        NOT NULL DEFAULT '',
    duration         integer,
    width            integer,
    height           integer,
    first_chat_id    bigint      NOT NULL,
    first_message_id bigint      NOT NULL,
    -- 'local': first seen by this deployment; 'r2': another deployment
    -- sharing the bucket had it first.
    origin           text        NOT NULL DEFAULT 'local' CHECK (origin IN ('local', 'r2')),
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX files_created_at ON files (created_at DESC);

-- Each bot's own file_id for a file, one row per (file, bot slot): eleven
-- bots are eleven rows, upserted independently, so no bot or retry can
-- overwrite another's. r2_synced_at is NULL until the row's file_id is in
-- the R2 object; a changed file_id clears it.
CREATE TABLE file_bot_ids (
    file_unique_id text        NOT NULL REFERENCES files (file_unique_id) ON DELETE CASCADE,
    slot           integer     NOT NULL CHECK (slot >= 1),
    bot_id         bigint      NOT NULL,
    file_id        text        NOT NULL,
    chat_id        bigint      NOT NULL,
    message_id     bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    r2_synced_at   timestamptz,
    PRIMARY KEY (file_unique_id, slot)
);
CREATE INDEX file_bot_ids_r2_pending ON file_bot_ids (updated_at) WHERE r2_synced_at IS NULL;

-- One row per channel post carrying a file: the first bot to insert it owns
-- the reply, so a post seen by eleven bots is answered once. existing is the
-- dedupe decision made by that bot. The foreign key is deferred because the
-- claim is taken before the file row is written (so that the other bots wait
-- on the claim instead of each asking R2).
CREATE TABLE channel_posts (
    chat_id          bigint      NOT NULL,
    message_id       bigint      NOT NULL,
    file_unique_id   text        NOT NULL REFERENCES files (file_unique_id) DEFERRABLE INITIALLY DEFERRED,
    claimed_by_slot  integer     NOT NULL,
    claimed_by_bot   bigint      NOT NULL,
    existing         boolean     NOT NULL DEFAULT false,
    replied_at       timestamptz,
    reply_message_id bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chat_id, message_id)
);
CREATE INDEX channel_posts_file ON channel_posts (file_unique_id);

-- Load per bot, for picking who sends a file (/get, streaming): the least
-- loaded bot not in flood wait goes first.
CREATE TABLE bot_load (
    bot_id           bigint      PRIMARY KEY,
    in_flight        integer     NOT NULL DEFAULT 0,
    sends            bigint      NOT NULL DEFAULT 0,
    failures         bigint      NOT NULL DEFAULT 0,
    flood_wait_until timestamptz,
    last_used_at     timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- /find searches names by substring. With pg_trgm (contrib, trusted since
-- Postgres 13) a trigram index serves LIKE '%text%'; without it the search
-- still works, by scanning.
-- +goose StatementBegin
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    EXECUTE 'CREATE INDEX files_name_trgm ON files USING gin (lower(file_name) gin_trgm_ops)';
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm unavailable (%): /find will scan', SQLERRM;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP TABLE bot_load;
DROP TABLE channel_posts;
DROP TABLE file_bot_ids;
DROP TABLE files;
