-- Identity resolution: identifiers, profiles, merge history, kept-out decisions, manual rules,
-- the review queue of probabilistic matches, and an audit trail. All of it is derived from events
-- plus rules, and `klantbeeld identity rebuild` can recompute it.

CREATE TABLE identifiers (
    identifier_id BIGINT NOT NULL,
    id_type VARCHAR NOT NULL,
    id_value VARCHAR NOT NULL,
    profile_id VARCHAR,              -- NULL: seen, but kept out of every merge so far
    first_seen TIMESTAMPTZ NOT NULL  -- time of the first stored event that carried it
);

CREATE TABLE profiles (
    profile_id VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    created_seq BIGINT NOT NULL,
    origin_identifier BIGINT NOT NULL,
    merged_into VARCHAR,             -- set once merged: the live profile this id resolves to
    merged_at TIMESTAMPTZ
);

CREATE TABLE profile_merges (
    survivor VARCHAR NOT NULL,
    merged VARCHAR NOT NULL,
    merged_at TIMESTAMPTZ NOT NULL,
    seq BIGINT NOT NULL,
    reason VARCHAR NOT NULL
);

CREATE TABLE identity_decisions (
    seq BIGINT NOT NULL,
    decided_at TIMESTAMPTZ NOT NULL,
    identifier_id BIGINT NOT NULL,
    id_type VARCHAR NOT NULL,
    id_value VARCHAR NOT NULL,
    reason VARCHAR NOT NULL
);

-- Which identifiers each event carried; `kept` false when a rule kept it out of the event's links;
-- the primary one (highest priority kept) decides which profile's timeline shows the event.
CREATE TABLE identity_links (
    seq BIGINT NOT NULL,
    identifier_id BIGINT NOT NULL,
    kept BOOLEAN NOT NULL,
    is_primary BOOLEAN NOT NULL
);

CREATE TABLE identity_state (
    name VARCHAR NOT NULL,
    value BIGINT NOT NULL
);

CREATE SEQUENCE identity_rules_seq;

-- Manual rules: block a value, split an identifier off, link two profiles (review, probabilistic).
CREATE TABLE identity_rules (
    rule_id BIGINT NOT NULL DEFAULT nextval('identity_rules_seq'),
    kind VARCHAR NOT NULL,
    id_type VARCHAR NOT NULL,
    id_value VARCHAR NOT NULL,
    other_type VARCHAR,
    other_value VARCHAR,
    after_seq BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    actor VARCHAR NOT NULL,
    reason VARCHAR
);

CREATE SEQUENCE match_reviews_seq;

CREATE TABLE match_reviews (
    review_id BIGINT NOT NULL DEFAULT nextval('match_reviews_seq'),
    profile_a VARCHAR NOT NULL,
    profile_b VARCHAR NOT NULL,
    probability DOUBLE NOT NULL,
    evidence JSON,
    status VARCHAR NOT NULL,         -- pending, accepted, rejected
    created_at TIMESTAMPTZ NOT NULL,
    decided_at TIMESTAMPTZ,
    decided_by VARCHAR
);

CREATE SEQUENCE audit_log_seq;

-- Who did what, when: manual identity operations now; privacy requests later. No personal data in
-- `detail` beyond what the action needs to be understood.
CREATE TABLE audit_log (
    audit_id BIGINT NOT NULL DEFAULT nextval('audit_log_seq'),
    occurred_at TIMESTAMPTZ NOT NULL,
    actor VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    subject VARCHAR,
    detail JSON
);

-- Staging for set-based updates of the resolver's changes (emptied in the same transaction).
CREATE TABLE identity_moves (identifier_id BIGINT NOT NULL, profile_id VARCHAR);
CREATE TABLE identity_aliases (merged VARCHAR NOT NULL, survivor VARCHAR NOT NULL, merged_at TIMESTAMPTZ NOT NULL);

INSERT INTO identity_state VALUES ('resolved_seq', 0), ('version', 0);
