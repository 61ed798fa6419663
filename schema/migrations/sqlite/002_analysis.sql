-- lossguard schema v2: the analyzers write alerts in the ingest transaction.
--
-- An episode is identified by (run, kind, rank, first_step): the analyzers upsert on this key, so
-- replaying stored steps after a restart updates an episode instead of duplicating it. rank is NULL
-- for episodes judged across ranks; ifnull() makes NULLs compare equal here.
CREATE UNIQUE INDEX alerts_episode ON alerts (run_id, kind, ifnull(rank, -1), first_step);

-- The highest step of the run the analyzers have judged (NULL: never analysed). Written in the
-- same transaction as the steps, so that a restarted server knows which stored steps still wait
-- for judgement (a step waits for its ranks) and which are history.
ALTER TABLE runs ADD COLUMN judged_through INTEGER;
