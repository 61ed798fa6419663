-- lossguard schema v9 on PostgreSQL: the learning rate in the downsampled series (see the SQLite
-- file). PostgreSQL keeps a NaN as a double, greater than every number: the filters leave it out.
ALTER TABLE step_rollups ADD COLUMN lr_min DOUBLE PRECISION;
ALTER TABLE step_rollups ADD COLUMN lr_max DOUBLE PRECISION;
ALTER TABLE step_rollups ADD COLUMN lr_nan BIGINT NOT NULL DEFAULT 0;

UPDATE step_rollups
SET lr_min = block.lr_min, lr_max = block.lr_max, lr_nan = block.lr_nan
FROM (SELECT run_id, rank, step / 16 AS bucket,
             MIN(lr) FILTER (WHERE lr <> 'NaN') AS lr_min,
             MAX(lr) FILTER (WHERE lr <> 'NaN') AS lr_max,
             COUNT(*) FILTER (WHERE lr = 'NaN') AS lr_nan
      FROM steps GROUP BY run_id, rank, step / 16) AS block
WHERE step_rollups.width = 16 AND step_rollups.run_id = block.run_id
  AND step_rollups.rank = block.rank AND step_rollups.bucket = block.bucket;

UPDATE step_rollups
SET lr_min = child.lr_min, lr_max = child.lr_max, lr_nan = child.lr_nan
FROM (SELECT run_id, rank, bucket / 16 AS bucket, MIN(lr_min) AS lr_min, MAX(lr_max) AS lr_max,
             SUM(lr_nan)::BIGINT AS lr_nan
      FROM step_rollups WHERE width = 16 GROUP BY run_id, rank, bucket / 16) AS child
WHERE step_rollups.width = 256 AND step_rollups.run_id = child.run_id
  AND step_rollups.rank = child.rank AND step_rollups.bucket = child.bucket;

UPDATE step_rollups
SET lr_min = child.lr_min, lr_max = child.lr_max, lr_nan = child.lr_nan
FROM (SELECT run_id, rank, bucket / 16 AS bucket, MIN(lr_min) AS lr_min, MAX(lr_max) AS lr_max,
             SUM(lr_nan)::BIGINT AS lr_nan
      FROM step_rollups WHERE width = 256 GROUP BY run_id, rank, bucket / 16) AS child
WHERE step_rollups.width = 4096 AND step_rollups.run_id = child.run_id
  AND step_rollups.rank = child.rank AND step_rollups.bucket = child.bucket;

UPDATE step_rollups
SET lr_min = child.lr_min, lr_max = child.lr_max, lr_nan = child.lr_nan
FROM (SELECT run_id, rank, bucket / 16 AS bucket, MIN(lr_min) AS lr_min, MAX(lr_max) AS lr_max,
             SUM(lr_nan)::BIGINT AS lr_nan
      FROM step_rollups WHERE width = 4096 GROUP BY run_id, rank, bucket / 16) AS child
WHERE step_rollups.width = 65536 AND step_rollups.run_id = child.run_id
  AND step_rollups.rank = child.rank AND step_rollups.bucket = child.bucket;
