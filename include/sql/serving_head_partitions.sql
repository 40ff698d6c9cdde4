-- The static serving table's partitions, for the online service's head (ml/serving/head.py):
-- one row per (target_date, model_version). The service holds the newest ones written by the
-- champion and reloads them when this answer changes (a new partition, a rerun, a new champion).
SELECT
  target_date,
  model_version,
  COUNT(*) AS n,
  MAX(predicted_at) AS predicted_at
FROM {dataset}.predictions
GROUP BY target_date, model_version
ORDER BY target_date, model_version;
