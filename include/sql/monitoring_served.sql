-- The predictions served in [@start, @end) (ml.monitoring_job). @start, @end: TIMESTAMP.
SELECT prediction_id, served_at, entity_key, target_date, features, model_version, path, latency_ms, score
FROM {dataset}.prediction_log
WHERE served_at >= @start AND served_at < @end
