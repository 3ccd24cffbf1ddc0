-- +goose Up
-- ferry's schema on Postgres. River's own tables are migrated separately
-- (rivermigrate, see package dbpg).

-- Updates that became update jobs, written in the same transaction as the
-- job: the key is the re-delivery guard once River has cleaned the job.
-- (Channel files are guarded by their sighting and indexed idempotently.)
CREATE TABLE received_updates (
    bot_id      bigint      NOT NULL,
    update_id   bigint      NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bot_id, update_id)
);

-- Updates accepted per hour, for /stats. Each intake flusher adds its
-- commits to its own row (counter: a random key per flusher), so flushers
-- of one process or of several never wait on each other's row.
CREATE TABLE update_counts (
    hour    timestamptz NOT NULL,
    counter integer     NOT NULL,
    n       bigint      NOT NULL,
    PRIMARY KEY (hour, counter)
);

-- MTProto sessions, one per bot, sealed with SESSION_KEY (AES-256-GCM):
-- a stolen database dump does not log anyone into Telegram.
CREATE TABLE mtproto_sessions (
    bot_id     bigint      PRIMARY KEY,
    nonce      bytea       NOT NULL,
    data       bytea       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Resume state of one upload, keyed by a stable caller-chosen key. The acked
-- bitmap is written in batches while parts land, so a new process re-sends
-- only what the dead one had not got acknowledged. random_id is chosen before
-- the first messages.sendMedia and kept across restarts, so the channel gets
-- exactly one post.
CREATE TABLE mtproto_uploads (
    key         text        PRIMARY KEY,
    bot_id      bigint      NOT NULL,
    file_id     bigint      NOT NULL,
    size        bigint      NOT NULL,
    part_size   integer     NOT NULL,
    total_parts integer     NOT NULL,
    big         boolean     NOT NULL,
    acked       bytea       NOT NULL,
    acked_count integer     NOT NULL DEFAULT 0,
    random_id   bigint,
    message_id  integer,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Every finished /upload, added up for /stats (one row, id 1).
CREATE TABLE upload_totals (
    id    smallint PRIMARY KEY CHECK (id = 1),
    files bigint   NOT NULL,
    bytes bigint   NOT NULL
);

-- The channel file index. One row per distinct Telegram file, keyed by
-- file_unique_id (the same for every bot); metadata from the first post
-- that showed it.
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
-- overwrite another's.
CREATE TABLE file_bot_ids (
    file_unique_id text        NOT NULL REFERENCES files (file_unique_id) ON DELETE CASCADE,
    slot           integer     NOT NULL CHECK (slot >= 1),
    bot_id         bigint      NOT NULL,
    file_id        text        NOT NULL,
    chat_id        bigint      NOT NULL,
    message_id     bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (file_unique_id, slot)
);

-- Files whose R2 object lacks a file_id the database has. A write removes
-- the row only if its gen is the one read before the write, so a change
-- made meanwhile stays pending. gen comes from a sequence, not a per-row
-- counter: a row deleted and inserted again must never repeat a gen an
-- older, slower writer still holds.
CREATE SEQUENCE r2_pending_gen;
CREATE TABLE r2_pending (
    file_unique_id text        PRIMARY KEY REFERENCES files (file_unique_id) ON DELETE CASCADE,
    gen            bigint      NOT NULL DEFAULT nextval('r2_pending_gen'),
    changed_at     timestamptz NOT NULL DEFAULT now()
);

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

-- Per bot, for picking who sends a file (/get, streaming): the least
-- loaded bot not in flood wait goes first.
CREATE TABLE bot_load (
    bot_id           bigint      PRIMARY KEY,
    sends            bigint      NOT NULL DEFAULT 0,
    failures         bigint      NOT NULL DEFAULT 0,
    flood_wait_until timestamptz,
    last_used_at     timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Sends in flight per bot, as leases instead of a counter: a process that
-- dies mid-send leaves a row that stops counting once it is older than any
-- send can take, where a counter would stay raised for good.
CREATE TABLE bot_sends (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bot_id     bigint      NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bot_sends_bot ON bot_sends (bot_id, started_at);

-- The send budget (package botpool): per bot and chat (chat_id 0: the bot
-- in every chat) the earliest its next send may go, and a 429's
-- retry_after. Every process paces against the same rows, locked while a
-- send's turn is chosen; the bot's row keeps its counters.
CREATE TABLE send_budget (
    bot_id        bigint      NOT NULL,
    chat_id       bigint      NOT NULL,
    next_at       timestamptz,
    blocked_until timestamptz,
    sends         bigint      NOT NULL DEFAULT 0,
    queued        bigint      NOT NULL DEFAULT 0,
    refused       bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (bot_id, chat_id)
);

-- Channel-file sightings waiting for the index, one row per intake commit:
-- element i of every array is sighting i. Eleven bots seeing a post are a
-- share of one heap tuple and index entry to insert, delete and vacuum,
-- not eleven. The drain takes rows in arrival order. A re-delivered update
-- is a second copy, which indexing (idempotent) absorbs.
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

-- Sightings the index refused (their data breaks a rule), kept with the
-- error for an admin to see in /stats and retry with /retry sightings,
-- instead of failing every round they would be part of.
CREATE TABLE sighting_failures (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    failed_at      timestamptz NOT NULL DEFAULT now(),
    error          text        NOT NULL,
    chat_id        bigint      NOT NULL,
    message_id     bigint      NOT NULL,
    bot_id         bigint      NOT NULL,
    file_unique_id text        NOT NULL,
    file_id        text        NOT NULL,
    file_type      text        NOT NULL,
    file_name      text        NOT NULL,
    file_size      bigint      NOT NULL,
    mime_type      text        NOT NULL,
    dc_id          integer     NOT NULL,
    caption        text        NOT NULL,
    duration       integer     NOT NULL,
    width          integer     NOT NULL,
    height         integer     NOT NULL
);

-- Chat commands per user in fixed windows, for the burst limit: a user who
-- sends more than the limit in one window is told once to slow down, then
-- ignored until the window ends, however many workers share the queue.
CREATE TABLE command_counts (
    user_id      bigint      NOT NULL,
    window_start timestamptz NOT NULL,
    n            integer     NOT NULL,
    PRIMARY KEY (user_id, window_start)
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

-- Worker processes' leases: each working process renews its row every
-- second or so; a running River job whose runner (the last of its
-- attempted_by, the process's River client id) has no live row is handed
-- back at once (jobs/lease.go), not after River's stuck-job horizon.
CREATE TABLE process_leases (
    id         text        PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

-- +goose Down
DROP TABLE process_leases;
DROP TABLE command_counts;
DROP TABLE sighting_failures;
DROP TABLE sighting_batches;
DROP TABLE send_budget;
DROP TABLE bot_sends;
DROP TABLE bot_load;
DROP TABLE channel_posts;
DROP TABLE r2_pending;
DROP SEQUENCE r2_pending_gen;
DROP TABLE file_bot_ids;
DROP TABLE files;
DROP TABLE upload_totals;
DROP TABLE mtproto_uploads;
DROP TABLE mtproto_sessions;
DROP TABLE update_counts;
DROP TABLE received_updates;
