-- Landing file sets already handled, so a re-delivered or re-triggered set is not processed twice.
CREATE TABLE IF NOT EXISTS {dataset}.processed_file_sets (
  file_set STRING,
  processed_at TIMESTAMP,
  run_id STRING,
  outcome STRING
);
