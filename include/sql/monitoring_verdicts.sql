-- The latest @limit judged windows (verdict not NULL) of @model_version ending at or before @until,
-- newest first (ml.monitoring_job's closed loop). @model_version: STRING, @until: TIMESTAMP, @limit: INT64.
SELECT window_start, window_end, value, breached
FROM {dataset}.monitoring_windows
WHERE figure = 'window_bad' AND model_version = @model_version AND window_end <= @until AND value IS NOT NULL
ORDER BY window_end DESC
LIMIT @limit
