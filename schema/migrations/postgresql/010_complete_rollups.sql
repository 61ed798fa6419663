-- lossguard schema v10 on PostgreSQL: a block of 256 steps or more is stored only once it is
-- complete (see the SQLite file).
DELETE FROM step_rollups
WHERE width > 16
  AND (bucket + 1) * (width / 16) >
      (SELECT MAX(step) FROM steps WHERE steps.run_id = step_rollups.run_id) / 16 - 1;
