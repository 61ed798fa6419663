-- lossguard schema v9: the learning rate in the downsampled series.
--
-- A blow-up caused by the learning rate shows in the loss and the gradient norm, but its cause only
-- in the lr, so the rollups keep it as they keep the other series: the minimum and maximum of the
-- non-NaN values (infinities included) and the number of NaNs. Blocks rolled up before this version
-- get theirs from their steps here, level by level, in one grouped scan each.
ALTER TABLE step_rollups ADD COLUMN lr_min REAL;
ALTER TABLE step_rollups ADD COLUMN lr_max REAL;
ALTER TABLE step_rollups ADD COLUMN lr_nan INTEGER NOT NULL DEFAULT 0;

-- A NaN is stored as the text 'NaN' (see 001_initial.sql).
UPDATE step_rollups
SET lr_min = block.lr_min, lr_max = block.lr_max, lr_nan = block.lr_nan
FROM (SELECT run_id, rank, step / 16 AS bucket,
             MIN(CASE WHEN typeof(lr) <> 'text' THEN lr END) AS lr_min,
             MAX(CASE WHEN typeof(lr) <> 'text' THEN lr END) AS lr_max,
             SUM(typeof(lr) = 'text') AS lr_nan
      FROM steps GROUP BY run_id, rank, step / 16) AS block
WHERE step_rollups.width = 16 AND step_rollups.run_id = block.run_id
  AND step_rollups.rank = block.rank AND step_rollups.bucket = block.bucket;

UPDATE step_rollups
SET lr_min = child.lr_min, lr_max = child.lr_max, lr_nan = child.lr_nan
FROM (SELECT run_id, rank, bucket / 16 AS bucket, MIN(lr_min) AS lr_min, MAX(lr_max) AS lr_max,
             SUM(lr_nan) AS lr_nan
      FROM step_rollups WHERE width = 16 GROUP BY run_id, rank, bucket / 16) AS child
WHERE step_rollups.width = 256 AND step_rollups.run_id = child.run_id
  AND step_rollups.rank = child.rank AND step_rollups.bucket = child.bucket;

UPDATE step_rollups
SET lr_min = child.lr_min, lr_max = child.lr_max, lr_nan = child.lr_nan
FROM (SELECT run_id, rank, bucket / 16 AS bucket, MIN(lr_min) AS lr_min, MAX(lr_max) AS lr_max,
             SUM(lr_nan) AS lr_nan
      FROM step_rollups WHERE width = 256 GROUP BY run_id, rank, bucket / 16) AS child
WHERE step_rollups.width = 4096 AND step_rollups.run_id = child.run_id
  AND step_rollups.rank = child.rank AND step_rollups.bucket = child.bucket;

UPDATE step_rollups
SET lr_min = child.lr_min, lr_max = child.lr_max, lr_nan = child.lr_nan
FROM (SELECT run_id, rank, bucket / 16 AS bucket, MIN(lr_min) AS lr_min, MAX(lr_max) AS lr_max,
             SUM(lr_nan) AS lr_nan
      FROM step_rollups WHERE width = 4096 GROUP BY run_id, rank, bucket / 16) AS child
WHERE step_rollups.width = 65536 AND step_rollups.run_id = child.run_id
  AND step_rollups.rank = child.rank AND step_rollups.bucket = child.bucket;
