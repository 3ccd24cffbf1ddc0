-- +goose Up
-- Sends in flight per bot, as leases instead of a counter: a process that
-- dies mid-send leaves a row that stops counting once it is older than any
-- send can take (see index.sendLease), where a counter stayed raised
-- forever and ranked that bot last for good.
CREATE TABLE bot_sends (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bot_id     bigint      NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bot_sends_bot ON bot_sends (bot_id, started_at);
ALTER TABLE bot_load DROP COLUMN in_flight;

-- +goose Down
ALTER TABLE bot_load ADD COLUMN in_flight integer NOT NULL DEFAULT 0;
DROP TABLE bot_sends;
