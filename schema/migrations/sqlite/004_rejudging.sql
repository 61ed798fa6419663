-- lossguard schema v4: replaced records are judged again.
--
-- A trainer resumed from a checkpoint sends steps that were judged already, with other values. The
-- analyzers then rewind to the first re-sent step and judge the new values as a new attempt of the
-- run: the episodes of the old values stay (resolved, marked superseded), the new values get their
-- own, keyed by the attempt. runs.attempt is the attempt being judged now.
ALTER TABLE runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alerts ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
DROP INDEX alerts_episode;
CREATE UNIQUE INDEX alerts_episode ON alerts (run_id, kind, ifnull(rank, -1), first_step, attempt);
