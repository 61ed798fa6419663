-- lossguard schema v4 on PostgreSQL (see sqlite/004_rejudging.sql).
ALTER TABLE runs ADD COLUMN attempt BIGINT NOT NULL DEFAULT 0;
ALTER TABLE alerts ADD COLUMN attempt BIGINT NOT NULL DEFAULT 0;
DROP INDEX alerts_episode;
CREATE UNIQUE INDEX alerts_episode ON alerts (run_id, kind, coalesce(rank, -1), first_step, attempt);
