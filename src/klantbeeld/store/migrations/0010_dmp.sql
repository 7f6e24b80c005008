-- The DMP side: anonymous cookie profiles holding third-party segments for a short time, the
-- taxonomy that names those segments, partner ID sync, and a report per feed received.
-- No personal data lives here: a cookie profile is a cookie/device id and segment ids with times.

-- Taxonomy nodes (IAB Audience Taxonomy 1.1 layout): unknown ids in feeds are kept and reported.
CREATE TABLE dmp_taxonomy (
    segment_id VARCHAR NOT NULL,
    parent_id VARCHAR,
    name VARCHAR NOT NULL,
    tier INTEGER,
    loaded_at TIMESTAMPTZ NOT NULL
);

-- One row per (cookie, segment, source): the cookie profile is the set of its live rows.
CREATE TABLE cookie_segments (
    cookie_id VARCHAR NOT NULL,
    segment_id VARCHAR NOT NULL,
    source VARCHAR NOT NULL,          -- the DMP source (feed origin) that sent it
    first_seen TIMESTAMPTZ NOT NULL,
    refreshed_at TIMESTAMPTZ NOT NULL,-- last time a feed sent it again
    expires_at TIMESTAMPTZ NOT NULL   -- refreshed_at + TTL (per source, per segment, default 90 d)
);

-- ID sync (match table): a partner's id for one of our cookies.
CREATE TABLE id_sync (
    partner VARCHAR NOT NULL,
    partner_id VARCHAR NOT NULL,
    cookie_id VARCHAR NOT NULL,
    synced_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

CREATE SEQUENCE dmp_feeds_seq;

-- What each feed delivered: lines read, segments added and removed, unknown ids, rejected lines.
CREATE TABLE dmp_feeds (
    feed_id BIGINT NOT NULL DEFAULT nextval('dmp_feeds_seq'),
    source VARCHAR NOT NULL,
    name VARCHAR,                     -- file name or "http"
    mode VARCHAR NOT NULL,            -- incremental, full
    partner VARCHAR,                  -- ids in the feed are this partner's (read through id_sync)
    received_at TIMESTAMPTZ NOT NULL,
    lines BIGINT NOT NULL DEFAULT 0,
    cookies BIGINT NOT NULL DEFAULT 0,
    added BIGINT NOT NULL DEFAULT 0,
    refreshed BIGINT NOT NULL DEFAULT 0,
    removed BIGINT NOT NULL DEFAULT 0,
    unmatched BIGINT NOT NULL DEFAULT 0,   -- partner ids with no cookie in id_sync
    rejected BIGINT NOT NULL DEFAULT 0,
    unknown_segments JSON,            -- {"segment id": lines} not in the taxonomy
    rejections JSON                   -- first rejected lines with their reason
);

-- What each expiry run removed.
CREATE TABLE dmp_expiries (
    ran_at TIMESTAMPTZ NOT NULL,
    segments_removed BIGINT NOT NULL,
    syncs_removed BIGINT NOT NULL,
    cookies_emptied BIGINT NOT NULL,
    took_s DOUBLE NOT NULL
);
