-- Every prediction logged for the target date @date (the bandit's rewards once its labels land).
-- @date: STRING (YYYY-MM-DD, as the log's `target_date`).
SELECT prediction_id, served_at, entity_key, target_date, model_version, path, score
FROM {dataset}.prediction_log
WHERE target_date = @date
