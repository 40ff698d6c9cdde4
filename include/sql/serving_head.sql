-- The head rows the online service holds in memory: the champion's batch predictions for a range
-- of target dates (ml/serving/head.py), keyed as the schema keys them (sensor_id, date, hour).
SELECT
  sensor_id,
  target_date,
  hour,
  score
FROM {dataset}.predictions
WHERE target_date BETWEEN @first_date AND @last_date
  AND model_version = @model_version;
