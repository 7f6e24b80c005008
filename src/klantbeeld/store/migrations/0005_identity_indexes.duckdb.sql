-- DuckDB: only the indexes a profile lookup needs; appends to these tables are small (new
-- identifiers and profiles), unlike events, whose appends an index would slow tenfold.
CREATE UNIQUE INDEX identifiers_type_value ON identifiers (id_type, id_value);
CREATE INDEX identifiers_profile ON identifiers (profile_id);
CREATE INDEX profiles_id ON profiles (profile_id);
