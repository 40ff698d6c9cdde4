-- The latest @limit closed-loop audit rows, newest first. @limit: INT64.
SELECT at, run_id, action, from_version, to_version, actor, reason, windows
FROM {dataset}.rollback_audit
ORDER BY at DESC
LIMIT @limit
