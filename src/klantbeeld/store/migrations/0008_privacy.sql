-- Privacy: data-subject requests, suppression of erased people, restrictions, consent provenance.

-- A request names its person by identifiers, stored only as SHA-256 of the normalised value.
CREATE TABLE privacy_requests (
    request_id VARCHAR NOT NULL,
    request_type VARCHAR NOT NULL,    -- access, portability, erasure, rectification, restriction, objection
    status VARCHAR NOT NULL,          -- pending, in_progress, completed, cancelled, failed
    identities JSON NOT NULL,         -- [{"type": "email", "hash": "<sha256 hex>"}]
    received_at TIMESTAMPTZ NOT NULL,
    expected_completion_at TIMESTAMPTZ NOT NULL,
    started_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    cancelled_at TIMESTAMPTZ,
    requested_by VARCHAR NOT NULL,
    detail JSON,                      -- rectification: the corrected traits (cleared when done)
    result JSON,                      -- counts and file names; no personal data
    error VARCHAR
);

-- Erased people: their identifiers hashed, so that later events carrying them are dropped.
CREATE TABLE suppressions (
    id_type VARCHAR NOT NULL,
    id_hash VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    request_id VARCHAR
);

-- Profiles kept but not used: restriction (Art. 18) keeps them out of every activation.
CREATE TABLE profile_restrictions (
    profile_id VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,            -- restricted
    since TIMESTAMPTZ NOT NULL,
    request_id VARCHAR
);

ALTER TABLE source_stats ADD COLUMN suppressed BIGINT NOT NULL DEFAULT 0;
-- The event that carried a consent signal (NULL: recorded through the API or a request).
ALTER TABLE consent_ledger ADD COLUMN seq BIGINT;
