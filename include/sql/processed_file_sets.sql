-- Every landing file set already handled by dynamic_training, with its latest outcome.
SELECT file_set, outcome, run_id, processed_at
FROM {dataset}.processed_file_sets
ORDER BY file_set
