-- Computed traits, segments, membership history, the internal event log, and the consent ledger
-- the segment language reads (the privacy capability writes it).

-- Each event's live profile: the profile of its primary identifier.
CREATE VIEW event_profiles AS
SELECT l.seq, i.profile_id
FROM identity_links l JOIN identifiers i ON i.identifier_id = l.identifier_id
WHERE l.is_primary AND i.profile_id IS NOT NULL;

-- Per live profile, its traits: merged from what sources sent (kind 'trait') and computed from
-- events (kind 'computed'). Typed projections make comparisons plain SQL: `num` for numbers,
-- `txt` for strings, booleans ('true'/'false') and lists (JSON text, `is_list`), `ts` for
-- date-times (ISO strings included).
CREATE TABLE profile_traits (
    profile_id VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    value JSON,
    num DOUBLE,
    txt VARCHAR,
    ts TIMESTAMPTZ,
    is_list BOOLEAN NOT NULL,
    computed_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE computed_traits (
    name VARCHAR NOT NULL,
    definition JSON NOT NULL,
    origin VARCHAR NOT NULL,          -- config, api, builtin
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    computed_at TIMESTAMPTZ
);

CREATE TABLE segments (
    segment_id VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    description VARCHAR,
    definition JSON NOT NULL,
    origin VARCHAR NOT NULL,          -- api, config, builtin
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    computed_at TIMESTAMPTZ,
    size BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE segment_members (
    segment_id VARCHAR NOT NULL,
    profile_id VARCHAR NOT NULL,
    entered_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE segment_history (
    segment_id VARCHAR NOT NULL,
    profile_id VARCHAR NOT NULL,
    entered_at TIMESTAMPTZ NOT NULL,
    exited_at TIMESTAMPTZ
);

CREATE SEQUENCE internal_events_seq;

-- What Klantbeeld itself observed (segment.entered, segment.exited, …), in order, for journeys and
-- destinations to read with a cursor.
CREATE TABLE internal_events (
    seq BIGINT NOT NULL DEFAULT nextval('internal_events_seq'),
    occurred_at TIMESTAMPTZ NOT NULL,
    kind VARCHAR NOT NULL,
    profile_id VARCHAR NOT NULL,
    segment_id VARCHAR,
    detail JSON
);

CREATE SEQUENCE consent_ledger_seq;

-- Consent per profile and purpose; history kept, the latest entry rules.
CREATE TABLE consent_ledger (
    entry_id BIGINT NOT NULL DEFAULT nextval('consent_ledger_seq'),
    profile_id VARCHAR NOT NULL,
    purpose VARCHAR NOT NULL,
    status VARCHAR NOT NULL,          -- granted, denied, withdrawn
    lawful_basis VARCHAR,
    source_id VARCHAR,
    recorded_at TIMESTAMPTZ NOT NULL,
    proof JSON
);

-- Staging for set-based work (emptied in the same transaction).
CREATE TABLE profile_scope (profile_id VARCHAR NOT NULL);
CREATE TABLE segment_staging (profile_id VARCHAR NOT NULL);
CREATE TABLE segment_changes (profile_id VARCHAR NOT NULL, entered BOOLEAN NOT NULL);

INSERT INTO identity_state VALUES ('segments_seq', 0), ('segments_version', 0);
