-- Batch (static serving) scores of the target dates in [@first, @last] (ml.monitoring_job's
-- output drift reference). @first, @last: DATE.
SELECT target_date, entity_key, score
FROM {dataset}.predictions
WHERE target_date BETWEEN CAST(@first AS DATE) AND CAST(@last AS DATE)
