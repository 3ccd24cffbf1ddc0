-- +goose Up
-- Channel files seen by a bot and not yet indexed. The intake writes one row
-- per bot in the transaction that accepts the update; one index_post job per
-- post indexes all its rows together and deletes them.
CREATE TABLE post_sightings (
    chat_id     bigint      NOT NULL,
    message_id  bigint      NOT NULL,
    bot_id      bigint      NOT NULL,
    update_json bytea       NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chat_id, message_id, bot_id)
);

-- The advisory lock key of a post, shared by the intake and index_post jobs.
-- +goose StatementBegin
CREATE FUNCTION post_lock_key(chat bigint, msg bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT hashtextextended(chat::text || ':' || msg::text, 7) $$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION post_lock_key(bigint, bigint);
DROP TABLE post_sightings;
