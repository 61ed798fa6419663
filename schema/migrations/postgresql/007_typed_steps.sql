-- lossguard schema v7 on PostgreSQL: step rows without their JSON text (see sqlite/007_typed_steps.sql).
--
-- 8-byte columns first, then the 4-byte sizes, then the variable-length ones: PostgreSQL aligns
-- each column to its size, so this order leaves no padding inside a row. NaN, +-Infinity and -0.0
-- are double precision values here; `rest` still carries a -0.0 so that both engines store the
-- same rows. The server copies the rows from steps_v6 and drops it in the migration's transaction.
ALTER TABLE steps RENAME TO steps_v6;
ALTER TABLE steps_v6 RENAME CONSTRAINT steps_pkey TO steps_v6_pkey;

CREATE TABLE steps (
  run_id            BIGINT NOT NULL,
  step              BIGINT NOT NULL,
  rank              BIGINT NOT NULL,
  loss              DOUBLE PRECISION NOT NULL,
  grad_norm         DOUBLE PRECISION,
  ref_loss          DOUBLE PRECISION,
  tokens            BIGINT,
  lr                DOUBLE PRECISION,
  time              DOUBLE PRECISION,
  nonfinite_grads   BIGINT,
  version           BIGINT NOT NULL DEFAULT 0,
  received_at       DOUBLE PRECISION NOT NULL,
  world_size        INTEGER NOT NULL,
  ga_steps          INTEGER NOT NULL,
  micro_batch_size  INTEGER NOT NULL,
  vocab_size        INTEGER,
  micro             BYTEA,
  rest              TEXT,
  PRIMARY KEY (run_id, step, rank)
);
