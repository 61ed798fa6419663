-- lossguard schema v5 on PostgreSQL (see sqlite/005_shared_database.sql): runs.revision, by which
-- a server notices that another one judged the run since its own last batch of it.
ALTER TABLE runs ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
