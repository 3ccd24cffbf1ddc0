-- +goose Up
-- MTProto sessions, one per bot, encrypted with SESSION_KEY (AES-256-GCM):
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

-- +goose Down
DROP TABLE mtproto_uploads;
DROP TABLE mtproto_sessions;
