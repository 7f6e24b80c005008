-- DuckDB: a one-column ART index so one cookie's segments are a lookup, not a scan (at 10M rows
-- ~1 ms against several hundred); a profile read that shows third-party segments does one per
-- linked cookie. Not unique: uniqueness checks are what make appends slow.
CREATE INDEX cookie_segments_cookie ON cookie_segments (cookie_id);
CREATE INDEX id_sync_cookie ON id_sync (cookie_id);
