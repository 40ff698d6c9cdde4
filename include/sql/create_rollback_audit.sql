-- Closed-loop rollback audit (ml.monitoring_job): every automatic rollback, every rollback the
-- policy held back (cooldown, disarmed, nothing safe to go back to) and every re-arm by a person.
CREATE TABLE IF NOT EXISTS {dataset}.rollback_audit (
  acted_at TIMESTAMP,
  run_id STRING,
  action STRING,        -- rollback | suppressed | rearmed
  from_version STRING,
  to_version STRING,
  actor STRING,         -- 'monitoring' for automatic actions, the person otherwise
  reason STRING,
  windows STRING        -- JSON: the bad windows that confirmed the breach
);
