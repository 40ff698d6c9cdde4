-- Static serving table: batch predictions, replaced per target_date (idempotent reruns).
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
);
