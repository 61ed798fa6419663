-- lossguard schema v10: a block of 256 steps or more is stored only once it is complete.
--
-- Servers built for this version write a coarser block (256, 4,096 or 65,536 steps) once every
-- 16-step block in it is a whole block behind the run's newest step, from its children, and keep
-- it exact from then on; queries read the block still filling from the level below. Earlier
-- servers merged every 16-step block into its three ancestors as soon as it was refreshed, so an
-- ancestor still filling was stored, and queries read it. Those are deleted here (they are rebuilt
-- from their children when they complete), so that a database holds what this version writes.
-- Not compatible with earlier servers: they would read the missing blocks as empty.
DELETE FROM step_rollups
WHERE width > 16
  AND (bucket + 1) * (width / 16) >
      (SELECT MAX(step) FROM steps WHERE steps.run_id = step_rollups.run_id) / 16 - 1;
