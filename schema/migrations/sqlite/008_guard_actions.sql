-- lossguard schema v8: what trainers' guards did (a record's "guard" field).
--
-- The record keeps the field as sent (steps.rest); this table indexes it so that an alert can show
-- the actions taken on its episode without reading the run's steps. One action per record: keyed as
-- the record, replaced with it. `episode_id` is the alert id a server verdict named (NULL for what
-- the collector judged on the step itself); `detail` is the field's JSON.
CREATE TABLE guard_actions (
  run_id       INTEGER NOT NULL REFERENCES runs(id),
  step         INTEGER NOT NULL,
  rank         INTEGER NOT NULL,
  action       TEXT    NOT NULL,
  kind         TEXT    NOT NULL,
  episode_id   INTEGER,
  detail       TEXT    NOT NULL,
  received_at  REAL    NOT NULL,
  PRIMARY KEY (run_id, step, rank)
);
