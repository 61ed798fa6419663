-- lossguard schema v2 on PostgreSQL (see sqlite/002_analysis.sql).
CREATE UNIQUE INDEX alerts_episode ON alerts (run_id, kind, coalesce(rank, -1), first_step);
ALTER TABLE runs ADD COLUMN judged_through BIGINT;
