-- lossguard schema v7: step rows without their JSON text.
--
-- Until v6 each row kept the record's canonical JSON (about 200 bytes) beside the few typed columns
-- that queries read. From v7 every field of wire format v1 has a typed column, and the row gives
-- the record back exactly (server/src/store/step_row.h): `micro` holds the micro-batches as a
-- compact binary value (one format byte, then per micro-batch a flags byte, the loss as 8 bytes,
-- the tokens as a varint, the loss_sum as 8 bytes if sent); `rest` is a JSON object of what the
-- typed columns cannot hold exactly: unknown fields, and a negative zero (a REAL column turns -0.0
-- into 0). A small record takes about a third of the bytes it took.
--
-- The rows are converted by the server (the same code as ingest, so that a converted row and a
-- newly written one are alike): this file renames the old table to steps_v6 and creates the new
-- one; the server then copies every row across, decoded from its JSON, and drops steps_v6, in the
-- migration's transaction. Freed pages are reused by new rows; `VACUUM` gives them back to the file
-- system at once.
ALTER TABLE steps RENAME TO steps_v6;

CREATE TABLE steps (
  run_id            INTEGER NOT NULL,
  step              INTEGER NOT NULL,
  rank              INTEGER NOT NULL,
  loss              REAL    NOT NULL,   -- NaN as the text 'NaN' (see 001_initial.sql)
  grad_norm         REAL,               -- NULL: not sent
  ref_loss          REAL,
  tokens            INTEGER,
  world_size        INTEGER NOT NULL,
  ga_steps          INTEGER NOT NULL,
  micro_batch_size  INTEGER NOT NULL,
  vocab_size        INTEGER,
  lr                REAL,
  nonfinite_grads   INTEGER,
  time              REAL,
  micro             BLOB,               -- NULL: no micro-batches sent
  rest              TEXT,               -- NULL: nothing beyond the typed columns
  version           INTEGER NOT NULL DEFAULT 0,  -- how many times this key was replaced
  received_at       REAL    NOT NULL,
  PRIMARY KEY (run_id, step, rank)
) WITHOUT ROWID;
