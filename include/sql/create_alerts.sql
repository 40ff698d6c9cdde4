-- Alerts raised by ml.alerts.raise_alert: one row per alert; `signature` groups recurring errors.
CREATE TABLE IF NOT EXISTS {dataset}.alerts (
  alert_id STRING,
  raised_at TIMESTAMP,
  severity STRING,
  source STRING,
  message STRING,
  signature STRING,
  is_new BOOL,
  context STRING  -- JSON payload
);
