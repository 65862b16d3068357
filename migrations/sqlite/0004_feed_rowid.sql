-- The feed's sequence number becomes the table's rowid: `BIGINT PRIMARY KEY` is not an alias of
-- the rowid in SQLite (only `INTEGER PRIMARY KEY` is), so every feed row was written twice, to
-- the table and to a separate index on `seq` — one b-tree more per event and per attempt.
CREATE TABLE feed_by_seq (
    seq            INTEGER PRIMARY KEY,
    project_id     TEXT NOT NULL,
    kind           TEXT NOT NULL,
    time           BIGINT NOT NULL,
    source_id      TEXT,
    destination_id TEXT,
    event_type     TEXT,
    payload        BLOB NOT NULL
);
INSERT INTO feed_by_seq (seq, project_id, kind, time, source_id, destination_id, event_type, payload)
    SELECT seq, project_id, kind, time, source_id, destination_id, event_type, payload FROM feed;
DROP TABLE feed;
ALTER TABLE feed_by_seq RENAME TO feed;
CREATE INDEX feed_by_project ON feed (project_id, seq);
