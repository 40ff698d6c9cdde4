-- Messages the streaming scoring pipeline (ml.score_pipeline) could not score: the payload as
-- received and why (malformed JSON, a missing field, a wrong type), appended per fixed window.
-- BigQuery: one partition per day of the window (the DuckDB rendering drops PARTITION BY).
CREATE TABLE IF NOT EXISTS {dataset}.streaming_dead_letters (
  payload STRING,
  reason STRING,
  window_end TIMESTAMP
)
PARTITION BY DATE(window_end);
