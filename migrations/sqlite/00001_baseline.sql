-- +goose Up
-- ferry's schema on SQLite: the tables, keys and rules of the Postgres
-- baseline (migrations/postgres/00001_baseline.sql says what each table is
-- for), in SQLite's types. River's own tables are migrated separately
-- (rivermigrate, see package dbsqlite).
--
-- Every table is STRICT, so a value of the wrong type is refused as Postgres
-- refuses it instead of being stored as whatever it is. Timestamps are
-- INTEGER microseconds since the Unix epoch (timestamptz's precision; the
-- driver writes its transaction's start, as Postgres's now() is); booleans
-- INTEGER 0 or 1; bytea BLOB. The defaults are only for rows written by
-- hand: the driver always passes its clock.

CREATE TABLE received_updates (
    bot_id      INTEGER NOT NULL,
    update_id   INTEGER NOT NULL,
    received_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    PRIMARY KEY (bot_id, update_id)
) STRICT, WITHOUT ROWID;

-- hour: the start of the hour (UTC), in microseconds.
CREATE TABLE update_counts (
    hour    INTEGER NOT NULL,
    counter INTEGER NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (hour, counter)
) STRICT, WITHOUT ROWID;

CREATE TABLE mtproto_sessions (
    bot_id     INTEGER PRIMARY KEY,
    nonce      BLOB    NOT NULL,
    data       BLOB    NOT NULL,
    updated_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER))
) STRICT;

CREATE TABLE mtproto_uploads (
    key         TEXT    NOT NULL PRIMARY KEY,
    bot_id      INTEGER NOT NULL,
    file_id     INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    part_size   INTEGER NOT NULL,
    total_parts INTEGER NOT NULL,
    big         INTEGER NOT NULL CHECK (big IN (0, 1)),
    acked       BLOB    NOT NULL,
    acked_count INTEGER NOT NULL DEFAULT 0,
    random_id   INTEGER,
    message_id  INTEGER,
    created_at  INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    updated_at  INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER))
) STRICT, WITHOUT ROWID;

-- Every finished /upload, added up for /stats (one row, id 1).
CREATE TABLE upload_totals (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    files INTEGER NOT NULL,
    bytes INTEGER NOT NULL
) STRICT;

CREATE TABLE files (
    file_unique_id   TEXT    NOT NULL PRIMARY KEY,
    file_name        TEXT    NOT NULL DEFAULT '',
    file_size        INTEGER NOT NULL DEFAULT 0,
    mime_type        TEXT    NOT NULL DEFAULT '',
    file_type        TEXT    NOT NULL CHECK (file_type IN ('video', 'audio', 'document', 'animation')),
    dc_id            INTEGER NOT NULL DEFAULT 0,
    caption          TEXT    NOT NULL DEFAULT '',
    duration         INTEGER,
    width            INTEGER,
    height           INTEGER,
    first_chat_id    INTEGER NOT NULL,
    first_message_id INTEGER NOT NULL,
    origin           TEXT    NOT NULL DEFAULT 'local' CHECK (origin IN ('local', 'r2')),
    created_at       INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER))
) STRICT;
-- /find's order (newest first, then by key) read from the index.
CREATE INDEX files_created_at ON files (created_at DESC, file_unique_id);

CREATE TABLE file_bot_ids (
    file_unique_id TEXT    NOT NULL REFERENCES files (file_unique_id) ON DELETE CASCADE,
    slot           INTEGER NOT NULL CHECK (slot >= 1),
    bot_id         INTEGER NOT NULL,
    file_id        TEXT    NOT NULL,
    chat_id        INTEGER NOT NULL,
    message_id     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    PRIMARY KEY (file_unique_id, slot)
) STRICT, WITHOUT ROWID;

-- r2_pending.gen comes from this one-row counter, Postgres's sequence: a row
-- deleted and inserted again must never repeat a gen an older, slower writer
-- still holds. (Unlike a sequence the counter rolls back with its
-- transaction, but a gen no one committed was never read by anyone.)
CREATE TABLE r2_pending_gen (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    last INTEGER NOT NULL
) STRICT;
INSERT INTO r2_pending_gen (id, last) VALUES (1, 0);

CREATE TABLE r2_pending (
    file_unique_id TEXT    NOT NULL PRIMARY KEY REFERENCES files (file_unique_id) ON DELETE CASCADE,
    gen            INTEGER NOT NULL,
    changed_at     INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER))
) STRICT, WITHOUT ROWID;

-- The foreign key is deferred, as on Postgres: the claim is taken before
-- the file row is written.
CREATE TABLE channel_posts (
    chat_id          INTEGER NOT NULL,
    message_id       INTEGER NOT NULL,
    file_unique_id   TEXT    NOT NULL REFERENCES files (file_unique_id) DEFERRABLE INITIALLY DEFERRED,
    claimed_by_slot  INTEGER NOT NULL,
    claimed_by_bot   INTEGER NOT NULL,
    existing         INTEGER NOT NULL DEFAULT 0 CHECK (existing IN (0, 1)),
    replied_at       INTEGER,
    reply_message_id INTEGER,
    created_at       INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    PRIMARY KEY (chat_id, message_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX channel_posts_file ON channel_posts (file_unique_id);

CREATE TABLE bot_load (
    bot_id           INTEGER PRIMARY KEY,
    sends            INTEGER NOT NULL DEFAULT 0,
    failures         INTEGER NOT NULL DEFAULT 0,
    flood_wait_until INTEGER,
    last_used_at     INTEGER,
    updated_at       INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER))
) STRICT;

-- AUTOINCREMENT: a lease id is never reused (an identity column's
-- guarantee), so a late release cannot end another send's lease.
CREATE TABLE bot_sends (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    bot_id     INTEGER NOT NULL,
    started_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER))
) STRICT;
CREATE INDEX bot_sends_bot ON bot_sends (bot_id, started_at);

-- The send budget, as on Postgres; times in microseconds since the epoch.
CREATE TABLE send_budget (
    bot_id        INTEGER NOT NULL,
    chat_id       INTEGER NOT NULL,
    next_at       INTEGER,
    blocked_until INTEGER,
    sends         INTEGER NOT NULL DEFAULT 0,
    queued        INTEGER NOT NULL DEFAULT 0,
    refused       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bot_id, chat_id)
) STRICT;

-- One row per intake commit, as on Postgres; its sightings are one JSON
-- array of objects keyed by sighting_failures' column names, in arrival
-- order.
CREATE TABLE sighting_batches (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    n           INTEGER NOT NULL CHECK (n > 0),
    sightings   TEXT    NOT NULL CHECK (json_valid(sightings) AND json_array_length(sightings) = n)
) STRICT;

CREATE TABLE sighting_failures (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    failed_at      INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    error          TEXT    NOT NULL,
    chat_id        INTEGER NOT NULL,
    message_id     INTEGER NOT NULL,
    bot_id         INTEGER NOT NULL,
    file_unique_id TEXT    NOT NULL,
    file_id        TEXT    NOT NULL,
    file_type      TEXT    NOT NULL,
    file_name      TEXT    NOT NULL,
    file_size      INTEGER NOT NULL,
    mime_type      TEXT    NOT NULL,
    dc_id          INTEGER NOT NULL,
    caption        TEXT    NOT NULL,
    duration       INTEGER NOT NULL,
    width          INTEGER NOT NULL,
    height         INTEGER NOT NULL
) STRICT;

-- /find has no trigram index here: it scans files (see package dbsqlite).

-- Chat commands per user in fixed windows (microseconds), for the burst
-- limit, as on Postgres.
CREATE TABLE command_counts (
    user_id      INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    n            INTEGER NOT NULL,
    PRIMARY KEY (user_id, window_start)
) STRICT;

-- Worker processes' leases, as on Postgres (microseconds).
CREATE TABLE process_leases (
    id         TEXT    PRIMARY KEY,
    started_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

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
DROP TABLE r2_pending_gen;
DROP TABLE file_bot_ids;
DROP TABLE files;
DROP TABLE upload_totals;
DROP TABLE mtproto_uploads;
DROP TABLE mtproto_sessions;
DROP TABLE update_counts;
DROP TABLE received_updates;
