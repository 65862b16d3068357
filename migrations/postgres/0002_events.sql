-- The data path: events, their deliveries and attempts, idempotency keys, and the feed log.

CREATE TABLE events (
    id              TEXT PRIMARY KEY,
    project_id      TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    -- No foreign key: an event outlives the source it came through.
    source_id       TEXT,
    type            TEXT NOT NULL,
    body            BYTEA NOT NULL,
    content_type    TEXT NOT NULL,
    -- JSON of the inbound request (method, path, query, headers in order, source IP); NULL for
    -- published events.
    request         TEXT,
    idempotency_key TEXT,
    labels          TEXT NOT NULL,
    occur_time      BIGINT,
    receive_time    BIGINT NOT NULL,
    deliver_time    BIGINT
);
CREATE INDEX events_by_project ON events (project_id, id);

-- Keys seen recently: publish idempotency keys (scope '') and source dedup keys (scope = the
-- source id). A key whose expire_time has passed may be taken again.
CREATE TABLE idempotency_keys (
    project_id  TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    scope       TEXT NOT NULL,
    key         TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    expire_time BIGINT NOT NULL,
    PRIMARY KEY (project_id, scope, key)
);

CREATE TABLE deliveries (
    id                TEXT PRIMARY KEY,
    project_id        TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    event_id          TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    subscription_id   TEXT NOT NULL,
    destination_id    TEXT NOT NULL,
    state             TEXT NOT NULL,
    attempt_count     BIGINT NOT NULL DEFAULT 0,
    -- When the next attempt is due; NULL once the delivery is finished.
    next_attempt_time BIGINT,
    -- A node working on the delivery holds it until then; an expired lease makes it due again.
    lease_until       BIGINT,
    last_status_code  BIGINT,
    last_error        TEXT NOT NULL DEFAULT '',
    replay_of         TEXT,
    -- The transformed body and its content type; NULL sends the event's own.
    body              BYTEA,
    content_type      TEXT,
    forward_headers   BOOLEAN NOT NULL,
    create_time       BIGINT NOT NULL,
    update_time       BIGINT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_time) WHERE next_attempt_time IS NOT NULL;
CREATE INDEX deliveries_by_event ON deliveries (event_id);
CREATE INDEX deliveries_by_destination ON deliveries (destination_id, id);
CREATE INDEX deliveries_by_project ON deliveries (project_id, id);

CREATE TABLE attempts (
    id                 TEXT PRIMARY KEY,
    project_id         TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    delivery_id        TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    event_id           TEXT NOT NULL,
    destination_id     TEXT NOT NULL,
    number             BIGINT NOT NULL,
    outcome            TEXT NOT NULL,
    status_code        BIGINT,
    error_kind         TEXT,
    error_message      TEXT,
    -- JSON: url, method, headers; and the first bytes of the body sent.
    request            TEXT NOT NULL,
    request_body       BYTEA NOT NULL,
    response_headers   TEXT NOT NULL,
    response_body      BYTEA NOT NULL,
    response_truncated BOOLEAN NOT NULL,
    start_time         BIGINT NOT NULL,
    duration_us        BIGINT NOT NULL
);
CREATE INDEX attempts_by_delivery ON attempts (delivery_id, id);
CREATE INDEX attempts_by_project ON attempts (project_id, id);

-- The live feed: an ordered log of activity. `seq` comes from feed_sequence, updated in the same
-- transaction that writes the rows, so the row lock orders writers and sequence order is commit
-- order: a reader that has seen seq N can never later find a smaller one committing.
CREATE TABLE feed (
    seq            BIGINT PRIMARY KEY,
    project_id     TEXT NOT NULL,
    kind           TEXT NOT NULL,
    time           BIGINT NOT NULL,
    source_id      TEXT,
    destination_id TEXT,
    event_type     TEXT,
    payload        BYTEA NOT NULL
);
CREATE INDEX feed_by_project ON feed (project_id, seq);

CREATE TABLE feed_sequence (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq BIGINT NOT NULL
);
INSERT INTO feed_sequence (id, last_seq) VALUES (1, 0);
