"""Drift configuration: the package defaults (the only place they live), the caller's `drift:`
section merged over them, threshold resolution and the drift policy.

Rule: a reference holds statistics only, plus the binning it was built with (`BINNING_KEYS`).
Thresholds and the policy are resolved from the caller's current `drift:` section at every check,
so editing the profile changes the next verdict without re-promoting a model.
"""

from __future__ import annotations

from ml import features as F
from ml.errors import PermanentError


class DriftError(PermanentError, ValueError):
    """Bad drift input or configuration (the CLI exits 2 on it)."""


DEFAULT_CONFIG = {
    # Binning: part of the statistics, stored with the reference; a check uses the reference's.
    "bins": 20,                     # quantile bins of the reference (JS, PSI, loglik_drop)
    "top_k": 10,
    "max_values": 10000,            # categories kept by count; the rest are summed as "other"
    "slice_by": None,
    "reference_max_rows": 1_000_000,  # reference values stored for exact KS/W1 (a sample above)
    "sample_seed": 0,
    # Decisions: resolved from the caller's config at every check.
    "min_rows": 50,                 # fewer current rows: scores are stored, nothing is decided
    "min_slice_rows": 200,
    "slice_factor": 2.0,            # slices are smaller and noisier: thresholds x factor
    "min_bin_rows": 30,             # label-rate comparison only on bins this full on both sides
    "max_drifted_share": 0.3,
    # Calibrated on simulator seed 1 (normal days vs the injected scenarios), tested on seed 3.
    "defaults": {
        "numeric": {"ks": 0.12, "wasserstein_std": 0.5, "js": 0.2, "psi": 0.2, "null_delta": 0.1,
                    "label_mi_delta": 0.12},
        "categorical": {"linf": 0.05, "psi": 0.15, "oov_rate": 0.05, "null_delta": 0.1,
                        "label_mi_delta": 0.1},
        "label": {"linf": 0.06},
        "leakage_auc": 0.9,         # a model input that alone predicts the label this well is suspect
    },
    "features": {},
    # alert: scores stored + alerts raised, training goes on (the gate judges the candidate);
    # block: the drift task fails and the run stops before training.
    "policy": {"action": "alert", "features": {}},
}
BINNING_KEYS = ("bins", "top_k", "max_values", "slice_by", "reference_max_rows", "sample_seed")
DECISION_KEYS = ("min_rows", "min_slice_rows", "slice_factor", "min_bin_rows", "max_drifted_share")
ACTIONS = ("alert", "block")
TABLE = "_table"  # the pseudo-feature of table-level scores (drifted_share)


def merge_config(config: dict | None) -> dict:
    """The caller's `drift:` section over DEFAULT_CONFIG; `defaults` and `policy` merge key by key.
    Unknown keys raise DriftError naming them (a typo must not silently keep a default)."""
    config = dict(config or {})
    _no_unknown(config, DEFAULT_CONFIG, "drift config key")
    defaults = config.get("defaults") or {}
    _no_unknown(defaults, DEFAULT_CONFIG["defaults"], "drift.defaults key")
    policy = config.get("policy") or {}
    _no_unknown(policy, DEFAULT_CONFIG["policy"], "drift.policy key")
    merged = {**DEFAULT_CONFIG, **config}
    merged["defaults"] = {
        kind: ({**value, **(defaults.get(kind) or {})} if isinstance(value, dict) else defaults.get(kind, value))
        for kind, value in DEFAULT_CONFIG["defaults"].items()}
    merged["policy"] = {"action": policy.get("action", "alert"), "features": dict(policy.get("features") or {})}
    merged["features"] = dict(config.get("features") or {})
    return merged


def binning(schema: F.Schema, config: dict | None = None) -> dict:
    """The binning keys of the `drift:` section; `slice_by` unset = the schema's first declared
    slice. A slice column the schema lacks is an error, not a silently unsliced report."""
    cfg = merge_config(config)
    out = {k: cfg[k] for k in BINNING_KEYS}
    if out["slice_by"] is None and schema.slices:
        out["slice_by"] = schema.slices[0]
    if out["slice_by"] is not None and out["slice_by"] not in schema.by_name:
        raise DriftError(f"drift.slice_by is {out['slice_by']!r}, which is not a column of the schema {schema.path}; "
                         f"name one of its features or declare `slices:` in the schema")
    return out


def _no_unknown(given: dict, known, what: str) -> None:
    if not isinstance(given, dict):
        raise DriftError(f"{what}s must be a mapping, not {given!r}")
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise DriftError(f"unknown {what}(s) {unknown}; known: {sorted(known)}")


def monitored(schema: F.Schema) -> list[F.Feature]:
    return [f for f in schema.features if f.kind in ("numeric", "categorical")]


def resolve_thresholds(schema: F.Schema, config: dict | None = None) -> dict:
    """The `drift:` section → {"features": {name: {metric: threshold, "monitor": bool}}, decision keys}.

    Per-feature entries override the defaults of the feature's kind key by key; a metric set to
    null is computed and stored but decides nothing; `monitor: false` leaves a feature out of
    alarms. Unknown feature or metric names raise DriftError naming them."""
    from ml.drift.metrics import METRICS

    cfg = merge_config(config)
    defaults, overrides = cfg["defaults"], cfg["features"]
    kinds = {f.name: f.kind for f in monitored(schema)}
    if schema.label:
        kinds[schema.label] = "label"
    unknown = sorted(set(overrides) - set(kinds))
    if unknown:
        raise DriftError(f"drift.features names unknown or unmonitored feature(s) {unknown} of the schema "
                         f"{schema.path}: remove them from the profile's drift.features (monitored: {sorted(kinds)})")
    for kind in ("numeric", "categorical", "label"):
        _check_metrics(defaults[kind], "categorical" if kind == "label" else kind, f"drift.defaults.{kind}", METRICS)
    out = {}
    for name, kind in kinds.items():
        metric_kind = "categorical" if kind == "label" else kind
        limits = {"monitor": True, **defaults[kind]}
        if kind != "label" and schema.feature(name).transform != "none":  # leakage: model inputs only
            limits["single_feature_auc"] = defaults["leakage_auc"]
        limits.update(overrides.get(name) or {})
        _check_metrics(overrides.get(name) or {}, metric_kind, f"drift.features.{name}", METRICS)
        out[name] = limits
    return {"features": out, **{k: cfg[k] for k in DECISION_KEYS}}


def _check_metrics(limits: dict, kind: str, where: str, metrics: dict) -> None:
    unknown = sorted(set(limits) - set(metrics[kind]) - {"monitor"})
    if unknown:
        raise DriftError(f"{where}: unknown {kind} metric(s) {unknown}; known: {sorted(metrics[kind])}")


def resolve_policy(schema: F.Schema, config: dict | None = None) -> dict:
    """{"action": default action, "features": {name: action}}, validated against the schema."""
    policy = merge_config(config)["policy"]
    known = {f.name for f in monitored(schema)} | ({schema.label} if schema.label else set()) | {TABLE}
    unknown = sorted(set(policy["features"]) - known)
    if unknown:
        raise DriftError(f"drift.policy.features names unknown feature(s) {unknown}")
    bad = sorted({str(a) for a in [policy["action"], *policy["features"].values()]} - set(ACTIONS))
    if bad:
        raise DriftError(f"drift.policy actions must be one of {list(ACTIONS)}, not {bad}")
    return policy


def blocking(breaches: list[dict], policy: dict) -> list[str]:
    """The breached features whose policy action is `block` (empty: alert only, training goes on)."""
    names = dict.fromkeys(s["feature"] for s in breaches)
    return [n for n in names if policy["features"].get(n, policy["action"]) == "block"]
