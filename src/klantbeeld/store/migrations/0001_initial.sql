-- Klantbeeld's first schema, written in DuckDB's dialect and translated for PostgreSQL.
-- Events are facts: append-only, never rewritten except by erasure or retention.

CREATE TABLE sources (
    source_id VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    channel VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    rate_limit DOUBLE,
    tracking_plan JSON,
    disabled BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE api_keys (
    key_id VARCHAR NOT NULL,
    key_hash VARCHAR NOT NULL,
    role VARCHAR NOT NULL,
    source_id VARCHAR,
    label VARCHAR,
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);

CREATE SEQUENCE events_seq;

CREATE TABLE events (
    seq BIGINT NOT NULL DEFAULT nextval('events_seq'),
    message_id VARCHAR NOT NULL,
    source_id VARCHAR NOT NULL,
    channel VARCHAR NOT NULL,
    origin VARCHAR NOT NULL,
    type VARCHAR NOT NULL,
    event VARCHAR,
    name VARCHAR,
    user_id VARCHAR,
    anonymous_id VARCHAR,
    device_id VARCHAR,
    group_id VARCHAR,
    previous_id VARCHAR,
    "timestamp" TIMESTAMPTZ NOT NULL,
    original_timestamp TIMESTAMPTZ,
    sent_at TIMESTAMPTZ,
    received_at TIMESTAMPTZ NOT NULL,
    payload JSON NOT NULL
);

-- messageIds seen, for de-duplication: HTTP ids expire after the window, imported ids are permanent.
CREATE TABLE message_ids (
    source_id VARCHAR NOT NULL,
    message_id VARCHAR NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    permanent BOOLEAN NOT NULL
);

CREATE SEQUENCE failed_events_seq;

CREATE TABLE failed_events (
    failed_id BIGINT NOT NULL DEFAULT nextval('failed_events_seq'),
    source_id VARCHAR NOT NULL,
    origin VARCHAR NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    message_id VARCHAR,
    event_type VARCHAR,
    reason_code VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    payload VARCHAR NOT NULL,
    detail JSON,
    status VARCHAR NOT NULL,
    attempts INTEGER NOT NULL,
    last_attempt_at TIMESTAMPTZ NOT NULL,
    resolved_at TIMESTAMPTZ
);

CREATE TABLE source_stats (
    source_id VARCHAR NOT NULL,
    accepted BIGINT NOT NULL,
    duplicates BIGINT NOT NULL,
    failed BIGINT NOT NULL,
    last_event_at TIMESTAMPTZ,
    last_received_at TIMESTAMPTZ
);

CREATE TABLE plan_violations (
    source_id VARCHAR NOT NULL,
    message_id VARCHAR NOT NULL,
    event_type VARCHAR,
    event VARCHAR,
    errors JSON NOT NULL,
    received_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE import_runs (
    import_id VARCHAR NOT NULL,
    source_id VARCHAR NOT NULL,
    input VARCHAR NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    rows_read BIGINT NOT NULL,
    accepted BIGINT NOT NULL,
    duplicates BIGINT NOT NULL,
    failed BIGINT NOT NULL,
    cursor_column VARCHAR,
    cursor_value VARCHAR,
    status VARCHAR NOT NULL
);
