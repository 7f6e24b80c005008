-- PostgreSQL: keys and indexes for traits, memberships and the internal event log.
CREATE UNIQUE INDEX profile_traits_key ON profile_traits (profile_id, name, kind);
CREATE INDEX profile_traits_name ON profile_traits (name, profile_id);
ALTER TABLE segments ADD PRIMARY KEY (segment_id);
ALTER TABLE computed_traits ADD PRIMARY KEY (name);
CREATE UNIQUE INDEX segment_members_key ON segment_members (segment_id, profile_id);
CREATE INDEX segment_members_profile ON segment_members (profile_id);
CREATE INDEX segment_history_open ON segment_history (segment_id, profile_id) WHERE exited_at IS NULL;
ALTER TABLE internal_events ADD PRIMARY KEY (seq);
CREATE INDEX consent_ledger_profile ON consent_ledger (profile_id, purpose, recorded_at);
