-- How many alerts already carry @signature (0 → the error is new).
SELECT COUNT(*) AS n_seen
FROM {dataset}.alerts
WHERE signature = @signature
