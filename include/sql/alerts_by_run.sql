-- Alerts with their run id (from the JSON context), oldest first: joins alerts to DAG runs.
SELECT raised_at, severity, source, message, is_new, JSON_VALUE(context, '$.run_id') AS run_id
FROM {dataset}.alerts
ORDER BY raised_at
