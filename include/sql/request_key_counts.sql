-- Requests per serving key in [@since, @until) from the online prediction log (ml.serving.advisor).
-- @since, @until: TIMESTAMP.
SELECT entity_key, COUNT(*) AS requests
FROM {dataset}.prediction_log
WHERE served_at >= @since AND served_at < @until
GROUP BY entity_key
