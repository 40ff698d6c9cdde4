-- Bandit routing shares (ml.serving.bandit), one row per model version each time the monitoring
-- DAG applies a window of late-label rewards. BigQuery: one partition per day.
CREATE TABLE IF NOT EXISTS {dataset}.bandit_shares (
  computed_at TIMESTAMP,
  window_id STRING,
  version STRING,
  role STRING,                   -- champion | challenger
  share FLOAT64,                 -- traffic share: floor + (1 - n x floor) x p_best; 0 when stopped
  p_best FLOAT64,                -- posterior probability of the highest reward rate
  p_worse_than_champion FLOAT64, -- the guard's figure (NULL for the champion)
  successes INT64,
  failures INT64,
  stopped BOOL,
  reason STRING
)
PARTITION BY DATE(computed_at);
