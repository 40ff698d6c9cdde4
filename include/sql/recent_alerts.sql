-- The latest alerts, newest first. @limit: INT64.
SELECT alert_id, raised_at, severity, source, message, signature, is_new, context
FROM {dataset}.alerts
ORDER BY raised_at DESC
LIMIT @limit
