-- Every figure the monitoring DAG computes for a window of served traffic, breached or not:
-- SLOs (requests, error_rate, latency), output drift (scores vs the batch predictions), input drift
-- (drifted share; the per-feature scores are in drift_scores), quality from late labels (auc,
-- cost_weighted_error, residuals) overall and per slice, and the window's verdict per champion
-- (figure = 'window_bad': 1 bad, 0 good, NULL no evidence). Replaced per window_start (reruns).
-- SLOs and output drift are computed on the window; quality and input drift on the traffic served
-- since data_start (the lookback: labels come late, and an hour is too little to judge an AUC).
-- BigQuery: one partition per day.
CREATE TABLE IF NOT EXISTS {dataset}.monitoring_windows (
  window_start TIMESTAMP,
  window_end TIMESTAMP,
  data_start TIMESTAMP,  -- the figure covers traffic served in [data_start, window_end)
  run_id STRING,
  computed_at TIMESTAMP,
  champion STRING,       -- the champion when the window was judged
  model_version STRING,  -- the version the figure is about ('all': every version together)
  figure STRING,
  slice STRING,          -- 'all' or <slice_by>=<value>
  value FLOAT64,
  threshold FLOAT64,
  breached BOOL
)
PARTITION BY DATE(window_start);
