-- lossguard schema v3: rollups written behind the steps, a step block at a time.
--
-- A batch of a large job holds one step of many ranks: refreshing every rank's rollup rows per batch
-- cost several writes per record, and ingest slowed with the world size. Instead the ingest
-- transaction records which blocks of 16 steps (all ranks) it changed; their rollup rows are
-- written once the run has moved a block past them (or after a few seconds), from one scan of the
-- block's rows. Until then queries read those blocks' rows directly, so answers are always
-- complete. Written in the same transactions as the steps and the rollups: a pending block is never
-- lost, across crashes too.
CREATE TABLE rollup_pending (
  run_id  INTEGER NOT NULL,
  bucket  INTEGER NOT NULL,  -- step / 16
  since   REAL    NOT NULL,  -- unix seconds (server clock) when the block became pending
  PRIMARY KEY (run_id, bucket)
) WITHOUT ROWID;
