-- lossguard schema v1: runs, per-step records, downsampling rollups, alerts.
--
-- Non-finite numbers: SQLite stores +-Infinity in REAL columns as such, but turns NaN into NULL.
-- lossguard therefore stores NaN as the TEXT value 'NaN' in REAL columns (SQLite is dynamically
-- typed; 'NaN' is not a numeric literal, so REAL affinity leaves it as text). NULL means "not sent".

CREATE TABLE runs (
  id            INTEGER PRIMARY KEY,
  name          TEXT    NOT NULL UNIQUE,
  first_seen    REAL    NOT NULL,            -- unix seconds, server clock
  last_seen     REAL    NOT NULL,
  record_count  INTEGER NOT NULL DEFAULT 0   -- distinct (step, rank) keys stored
);

-- One row per (run, step, rank). `record` is the canonical JSON of the record as received (all
-- fields, unknown ones included): the source of truth. The typed columns beside it are only those
-- that queries and rollups read; add a column in a later migration when a query needs one.
CREATE TABLE steps (
  run_id       INTEGER NOT NULL REFERENCES runs(id),
  step         INTEGER NOT NULL,
  rank         INTEGER NOT NULL,
  loss         REAL    NOT NULL,
  grad_norm    REAL,
  ref_loss     REAL,
  tokens       INTEGER,
  record       TEXT    NOT NULL,
  version      INTEGER NOT NULL DEFAULT 0,  -- how many times this key was replaced
  received_at  REAL    NOT NULL,
  PRIMARY KEY (run_id, step, rank)
) WITHOUT ROWID;

-- Min/max per series over aligned blocks of `width` steps (16, 256, 4096, 65536) per rank, so that a
-- downsampled query over a million steps reads thousands of rows, not a million. `bucket` is
-- step / width. Minima and maxima are over non-NaN values (NULL when there are none); *_nan counts
-- the NaNs, so that a NaN survives downsampling.
CREATE TABLE step_rollups (
  run_id         INTEGER NOT NULL,
  rank           INTEGER NOT NULL,
  width          INTEGER NOT NULL,
  bucket         INTEGER NOT NULL,
  first_step     INTEGER NOT NULL,
  last_step      INTEGER NOT NULL,
  n              INTEGER NOT NULL,
  loss_min       REAL, loss_max       REAL, loss_nan       INTEGER NOT NULL,
  ref_loss_min   REAL, ref_loss_max   REAL, ref_loss_nan   INTEGER NOT NULL,
  grad_norm_min  REAL, grad_norm_max  REAL, grad_norm_nan  INTEGER NOT NULL,
  tokens_min     REAL, tokens_max     REAL, tokens_nan     INTEGER NOT NULL,
  PRIMARY KEY (run_id, rank, width, bucket)
) WITHOUT ROWID;

-- An alert is an episode: opened at first_step, extended while its condition holds, resolved after.
CREATE TABLE alerts (
  id           INTEGER PRIMARY KEY,
  run_id       INTEGER NOT NULL REFERENCES runs(id),
  kind         TEXT    NOT NULL,
  severity     TEXT    NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
  state        TEXT    NOT NULL CHECK (state IN ('open', 'resolved')),
  rank         INTEGER,                        -- NULL: judged across ranks
  first_step   INTEGER NOT NULL,
  last_step    INTEGER NOT NULL,
  message      TEXT    NOT NULL,
  evidence     TEXT    NOT NULL DEFAULT '{}',  -- JSON object
  opened_at    REAL    NOT NULL,
  updated_at   REAL    NOT NULL,
  resolved_at  REAL,
  acked_at     REAL
);
CREATE INDEX alerts_by_run_state ON alerts (run_id, state);
