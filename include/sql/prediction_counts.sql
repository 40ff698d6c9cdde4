-- Summary of the predictions stored for one target date (checks batch prediction's idempotency).
-- @target_date: DATE (a 'YYYY-MM-DD' string works too, thanks to the CAST).
SELECT
  target_date,
  COUNT(*) AS n_rows,
  COUNT(DISTINCT entity_key) AS n_keys,
  STDDEV(score) AS score_stddev,
  AVG(score) AS mean_score,
  COUNT(DISTINCT model_version) AS n_model_versions,
  MIN(model_version) AS model_version,
  MAX(predicted_at) AS last_predicted_at
FROM {dataset}.predictions
WHERE target_date = CAST(@target_date AS DATE)
GROUP BY target_date
