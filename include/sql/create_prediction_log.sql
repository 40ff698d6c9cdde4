-- Online prediction log: one row per prediction served by ml.serving (head, tail or fallback),
-- written in batches by the service's background writer. Late labels join on prediction_id, or on
-- (target_date, entity_key) for labels that land by key (monitoring: residuals, AUC by slice);
-- `features` holds the instance as JSON for input drift.
-- entity_key: the schema's keys without the partition column (ml.features.entity_key);
-- target_date: the instance's partition column value (YYYY-MM-DD), NULL if the schema has none.
-- BigQuery: one partition per served day (the DuckDB rendering drops PARTITION BY).
CREATE TABLE IF NOT EXISTS {dataset}.prediction_log (
  prediction_id STRING,
  served_at TIMESTAMP,
  entity_key STRING,
  target_date STRING,
  features_hash STRING,
  features STRING,  -- JSON of the instance's known-ahead features
  model_version STRING,
  path STRING,      -- head | tail | fallback
  latency_ms FLOAT64,
  score FLOAT64
)
PARTITION BY DATE(served_at);
