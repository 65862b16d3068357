-- Control-plane resources (PostgreSQL; kept line for line with the SQLite schema). Times are microseconds since the Unix epoch; ids are prefixed ULIDs.
-- Each configuration resource keeps its settings as one JSON document (`spec`), so that adding a
-- setting needs no migration; columns exist only for what queries filter or join on.

CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    spec        TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY,
    project_id     TEXT REFERENCES projects (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    role           TEXT NOT NULL,
    prefix         TEXT NOT NULL,
    key_hash       TEXT NOT NULL UNIQUE,
    create_time    BIGINT NOT NULL,
    update_time    BIGINT NOT NULL,
    last_used_time BIGINT,
    expire_time    BIGINT,
    revoke_time    BIGINT
);
CREATE INDEX api_keys_by_project ON api_keys (project_id, id);

CREATE TABLE sources (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    spec        TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL
);
CREATE INDEX sources_by_project ON sources (project_id, id);

CREATE TABLE templates (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    spec        TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL
);
CREATE INDEX templates_by_project ON templates (project_id, id);

CREATE TABLE event_types (
    project_id  TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    id          TEXT NOT NULL,
    spec        TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    PRIMARY KEY (project_id, id)
);

CREATE TABLE destinations (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    spec        TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL
);
CREATE INDEX destinations_by_project ON destinations (project_id, id);

-- What the delivery engine learns about a destination, kept apart from its settings so that the
-- engine's frequent writes never race a user's update of the spec.
CREATE TABLE destination_health (
    destination_id       TEXT PRIMARY KEY REFERENCES destinations (id) ON DELETE CASCADE,
    state                TEXT NOT NULL DEFAULT 'ACTIVE',
    disabled_reason      TEXT NOT NULL DEFAULT '',
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    failing_since        BIGINT,
    last_success_time    BIGINT,
    last_failure_time    BIGINT,
    circuit              TEXT NOT NULL DEFAULT 'CLOSED',
    circuit_retry_time   BIGINT
);

CREATE TABLE subscriptions (
    id             TEXT PRIMARY KEY,
    project_id     TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    spec           TEXT NOT NULL,
    create_time    BIGINT NOT NULL,
    update_time    BIGINT NOT NULL,
    -- Copies of spec fields, for referential integrity: a destination, source or template that a
    -- subscription uses cannot be deleted (RESOURCE_IN_USE) until the subscription is.
    destination_id TEXT NOT NULL REFERENCES destinations (id) ON DELETE RESTRICT,
    source_id      TEXT REFERENCES sources (id) ON DELETE RESTRICT,
    template_id    TEXT REFERENCES templates (id) ON DELETE RESTRICT
);
CREATE INDEX subscriptions_by_project ON subscriptions (project_id, id);
CREATE INDEX subscriptions_by_destination ON subscriptions (destination_id);
CREATE INDEX subscriptions_by_source ON subscriptions (source_id);
CREATE INDEX subscriptions_by_template ON subscriptions (template_id);
