-- The profiles a real-time step touched, joined by every scoped trait and segment statement.
-- Without an index PostgreSQL could only nest-loop over the whole table per row when its
-- estimates were off (a DELETE of 100,000 trait rows ran for minutes); with it, each probe is an
-- index lookup. (DuckDB joins it by hash, and an ART index would only slow its appends.)
CREATE UNIQUE INDEX profile_scope_key ON profile_scope (profile_id);
