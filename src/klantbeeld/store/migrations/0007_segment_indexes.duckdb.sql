-- DuckDB: one-column ART indexes for a profile's traits and memberships.
CREATE INDEX profile_traits_profile ON profile_traits (profile_id);
CREATE INDEX segment_members_profile ON segment_members (profile_id);
