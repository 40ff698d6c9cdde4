-- The latest @limit closed-loop audit rows, newest first. @limit: INT64.
SELECT acted_at, run_id, action, from_version, to_version, actor, reason, windows
FROM {dataset}.rollback_audit
ORDER BY acted_at DESC
LIMIT @limit
