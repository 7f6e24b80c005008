-- Staging for replacing one computed trait's values in place (emptied in the same transaction):
-- score sets of model runs and full refreshes of computed traits both go through it. Replaces
-- score_staging, which had no `ts` and no trait name.
DROP TABLE score_staging;

CREATE TABLE trait_staging (
    name VARCHAR NOT NULL,
    profile_id VARCHAR NOT NULL,
    value JSON,
    num DOUBLE,
    txt VARCHAR,
    ts TIMESTAMPTZ,
    is_list BOOLEAN NOT NULL
);
