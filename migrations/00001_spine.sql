-- +goose Up
-- Every update accepted by the webhook or the poller, written in the same
-- transaction as its River job. The primary key is the backstop against
-- Telegram re-delivering an update after River has cleaned the finished job.
CREATE TABLE received_updates (
    bot_id      bigint      NOT NULL,
    update_id   bigint      NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bot_id, update_id)
);

-- Where each bot is a member and with what status (from my_chat_member
-- updates): the index asks which bots are administrators of a channel.
CREATE TABLE bot_chats (
    bot_id     bigint      NOT NULL,
    chat_id    bigint      NOT NULL,
    chat_type  text        NOT NULL,
    title      text        NOT NULL DEFAULT '',
    status     text        NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (bot_id, chat_id)
);

-- +goose Down
DROP TABLE bot_chats;
DROP TABLE received_updates;
