"""Drift: reference statistics of the champion's training data vs each new batch.

  config.py      package defaults (the only place they live), threshold and policy resolution
  statistics.py  per-feature statistics of a table (quantile bins, summaries, sorted values)
  metrics.py     one function per metric, registered by feature kind (textbook two-sample statistics)
  reference.py   build / store / load the reference (stats JSON + values Parquet in the registry)
  check.py       compare, check_drift, drift_scores rows, alerts, verdict
  report.py      HTML report with plots
  cli.py         python -m ml.drift [--json]
"""

from ml.drift.check import SCORES_SCHEMA, check_drift, compare, compute_stats, verdict, write_scores
from ml.drift.cli import main
from ml.drift.config import (
    DEFAULT_CONFIG,
    DriftError,
    merge_config,
    monitored,
    resolve_policy,
    resolve_thresholds,
)
from ml.drift.metrics import METRICS
from ml.drift.reference import (
    ATTACHMENT,
    VALUES_ATTACHMENT,
    build_reference,
    load_reference,
    save_reference,
    store_reference,
)
from ml.drift.statistics import read_table

__all__ = ["ATTACHMENT", "DEFAULT_CONFIG", "METRICS", "SCORES_SCHEMA", "VALUES_ATTACHMENT", "DriftError",
           "build_reference", "check_drift", "compare", "compute_stats", "load_reference", "main", "merge_config",
           "monitored", "read_table", "resolve_policy", "resolve_thresholds", "save_reference", "store_reference",
           "verdict", "write_scores"]
