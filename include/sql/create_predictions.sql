-- Static serving table: batch predictions, replaced per target_date (idempotent reruns).
-- BigQuery: one partition per target_date (the DuckDB rendering drops PARTITION BY).
CREATE TABLE IF NOT EXISTS {dataset}.predictions (
  target_date DATE,
  sensor_id STRING,
  hour INT64,
  road_type STRING,
  score FLOAT64,
  predicted_congested INT64,
  model_version STRING,
  run_id STRING,
  predicted_at TIMESTAMP
)
PARTITION BY target_date;
