-- Predictive model runs: one row per model per run, with the model card (metrics, data window,
-- parameters) that explains the scores written onto profiles as predicted traits.

CREATE SEQUENCE model_runs_seq;

CREATE TABLE model_runs (
    run_id BIGINT NOT NULL DEFAULT nextval('model_runs_seq'),
    batch_id BIGINT NOT NULL,         -- the `predict run` this model ran in
    model VARCHAR NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    as_of TIMESTAMPTZ NOT NULL,       -- the time scores are valid at (the latest event)
    status VARCHAR NOT NULL,          -- running, done, failed
    actor VARCHAR NOT NULL,
    scored BIGINT NOT NULL DEFAULT 0, -- profile values written
    card JSON,
    error VARCHAR
);

-- Staging for replacing one score trait's values (emptied in the same transaction).
CREATE TABLE score_staging (
    profile_id VARCHAR NOT NULL,
    value JSON,
    num DOUBLE,
    txt VARCHAR,
    is_list BOOLEAN NOT NULL
);
