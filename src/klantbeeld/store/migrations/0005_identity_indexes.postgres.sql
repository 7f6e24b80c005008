-- PostgreSQL: keys and indexes for profile lookups, timelines and the resolver's catch-up.
ALTER TABLE identifiers ADD PRIMARY KEY (identifier_id);
CREATE UNIQUE INDEX identifiers_type_value ON identifiers (id_type, id_value);
CREATE INDEX identifiers_profile ON identifiers (profile_id);
CREATE INDEX identifiers_value ON identifiers (id_value);
ALTER TABLE profiles ADD PRIMARY KEY (profile_id);
CREATE INDEX profiles_merged_into ON profiles (merged_into) WHERE merged_into IS NOT NULL;
CREATE INDEX identity_links_identifier ON identity_links (identifier_id, seq);
CREATE INDEX identity_links_seq ON identity_links (seq);
CREATE INDEX events_by_seq ON events (seq);
ALTER TABLE match_reviews ADD PRIMARY KEY (review_id);
ALTER TABLE identity_state ADD PRIMARY KEY (name);
CREATE INDEX profile_merges_survivor ON profile_merges (survivor);
