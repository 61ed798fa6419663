-- lossguard schema v3 on PostgreSQL (see sqlite/003_rollup_pending.sql).
CREATE TABLE rollup_pending (
  run_id  BIGINT NOT NULL,
  bucket  BIGINT NOT NULL,
  since   DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (run_id, bucket)
);
