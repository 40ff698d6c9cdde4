-- Every drift score computed, breached or not ("scores are always stored, not only on alarm").
-- BigQuery: one partition per data_date (the DuckDB rendering drops PARTITION BY).
CREATE TABLE IF NOT EXISTS {dataset}.drift_scores (
  checked_at TIMESTAMP,
  run_id STRING,
  data_date DATE,
  model_version STRING,
  feature STRING,
  slice STRING,
  metric STRING,
  value FLOAT64,
  threshold FLOAT64,
  breached BOOL
)
PARTITION BY data_date;
