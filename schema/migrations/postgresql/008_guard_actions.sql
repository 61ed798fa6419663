-- lossguard schema v8 on PostgreSQL: what trainers' guards did (see the SQLite file).
CREATE TABLE guard_actions (
  run_id       BIGINT NOT NULL REFERENCES runs(id),
  step         BIGINT NOT NULL,
  rank         BIGINT NOT NULL,
  action       TEXT   NOT NULL,
  kind         TEXT   NOT NULL,
  episode_id   BIGINT,
  detail       TEXT   NOT NULL,
  received_at  DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (run_id, step, rank)
);
