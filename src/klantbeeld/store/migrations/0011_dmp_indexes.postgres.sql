-- PostgreSQL: keys and lookups for cookie profiles, ID sync and feed reports.
-- One row per (cookie, segment, source); a cookie's profile is read by its id. No index on
-- expires_at: every refresh moves it (an index would make each one a non-HOT update), and expiry
-- is a daily batch that a sequential scan serves.
CREATE UNIQUE INDEX cookie_segments_key ON cookie_segments (cookie_id, segment_id, source);
-- Room in each page so a refresh (new times, same key) is a HOT update: no new index entry.
ALTER TABLE cookie_segments SET (fillfactor = 85);
-- A partner id points at one cookie; partner feeds are read through it.
CREATE UNIQUE INDEX id_sync_key ON id_sync (partner, partner_id);
CREATE INDEX id_sync_cookie ON id_sync (cookie_id);
ALTER TABLE dmp_taxonomy ADD PRIMARY KEY (segment_id);
ALTER TABLE dmp_feeds ADD PRIMARY KEY (feed_id);
