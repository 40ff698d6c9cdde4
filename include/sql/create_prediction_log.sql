-- Online prediction log: one row per prediction served by ml.serving (head, tail or fallback),
-- written in batches by the service's background writer. Late labels join on prediction_id
-- (monitoring: residuals, AUC by slice); `features` holds the instance as JSON for input drift.
-- BigQuery: one partition per served day (the DuckDB rendering drops PARTITION BY).
CREATE TABLE IF NOT EXISTS {dataset}.prediction_log (
  prediction_id STRING,
  served_at TIMESTAMP,
  sensor_id STRING,
  date STRING,
  hour INT64,
  features_hash STRING,
  features STRING,  -- JSON of the instance's known-ahead features
  model_version STRING,
  path STRING,      -- head | tail | fallback
  latency_ms FLOAT64,
  score FLOAT64
)
PARTITION BY DATE(served_at);
