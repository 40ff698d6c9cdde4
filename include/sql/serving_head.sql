-- The head rows the online service holds in memory: the champion's batch predictions for a range
-- of target dates (ml/serving/head.py), keyed by (target_date, entity_key) as the service keys a
-- request (ml.features.entity_key of the schema's keys without the partition column).
SELECT
  target_date,
  entity_key,
  score
FROM {dataset}.predictions
WHERE target_date BETWEEN @first_date AND @last_date
  AND model_version = @model_version;
