-- Every prediction logged for the target date @date (the bandit's rewards once its labels land).
-- @date: STRING (YYYY-MM-DD, as the log's `date` key).
SELECT prediction_id, served_at, sensor_id, date, hour, model_version, path, score
FROM {dataset}.prediction_log
WHERE date = @date
