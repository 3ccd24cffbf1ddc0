-- +goose Up
-- How many updates were accepted, per hour, for /stats. Each intake flusher
-- adds its commits to its own row (counter: a random key per flusher), so
-- flushers of one process or of several never wait on each other's row.
-- received_updates now holds only the updates that become update jobs (its
-- key is their re-delivery guard): a channel file is deduplicated by its
-- sighting's key and indexed idempotently, and skipping that row is a fifth
-- of what the intake writes per update.
CREATE TABLE update_counts (
    hour    timestamptz NOT NULL,
    counter integer     NOT NULL,
    n       bigint      NOT NULL,
    PRIMARY KEY (hour, counter)
);
INSERT INTO update_counts (hour, counter, n)
SELECT date_trunc('hour', received_at), 0, count(*) FROM received_updates GROUP BY 1;

-- +goose Down
DROP TABLE update_counts;
