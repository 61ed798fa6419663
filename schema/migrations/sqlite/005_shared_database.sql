-- lossguard schema v5: several lossguard servers on one database.
--
-- runs.revision counts the ingest transactions that touched the run. A server remembers the
-- revision its own last batch of a run left; a different one when the next batch arrives means
-- another server judged the run meanwhile, and the run's analyzer state is rebuilt from the stored
-- steps (as after a restart). On SQLite one server usually owns the file, but two processes on one
-- file are handled the same way.
ALTER TABLE runs ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;

-- The episode key written with coalesce(), which both SQLite and PostgreSQL spell the same, so that
-- the analyzers' upsert is one statement for both engines.
DROP INDEX alerts_episode;
CREATE UNIQUE INDEX alerts_episode ON alerts (run_id, kind, coalesce(rank, -1), first_step, attempt);
