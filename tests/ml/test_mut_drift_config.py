"""Drift configuration value by value: the merge over the package defaults, binning and its slice
column, per-feature thresholds (kind defaults, leakage AUC for model inputs only, overrides), the
policy and which breaches block, each error's exact text."""

from __future__ import annotations

import pytest

from ml import features as F
from ml.drift import config as C

SCHEMA = F.Schema(name="t", label="y", path="s.yaml", slices=("c",), features=(
    F.Feature("k", "string", "key", "ahead"),
    F.Feature("n", "float", "numeric", "ahead", transform="normalize"),
    F.Feature("c", "string", "categorical", "ahead"),
    F.Feature("r", "int", "numeric", "after")))
SCHEMA.by_name.update({f.name: f for f in SCHEMA.features})


def error(call) -> str:
    with pytest.raises(C.DriftError) as info:
        call()
    return str(info.value)


def test_merge_keeps_every_default_and_merges_defaults_and_policy_key_by_key():
    assert C.merge_config(None) == C.DEFAULT_CONFIG
    merged = C.merge_config({"bins": 5, "defaults": {"numeric": {"ks": 0.3}, "leakage_auc": 0.8},
                             "policy": {"features": {"n": "block"}}, "features": {"n": {"ks": 0.4}}})
    assert merged["bins"] == 5 and merged["top_k"] == 10 and merged["min_rows"] == 50
    assert merged["defaults"]["numeric"] == {**C.DEFAULT_CONFIG["defaults"]["numeric"], "ks": 0.3}
    assert merged["defaults"]["categorical"] == C.DEFAULT_CONFIG["defaults"]["categorical"]
    assert merged["defaults"]["leakage_auc"] == 0.8
    assert merged["policy"] == {"action": "alert", "features": {"n": "block"}}
    assert merged["features"] == {"n": {"ks": 0.4}}
    assert C.merge_config({"policy": {"action": "block"}})["policy"] == {"action": "block", "features": {}}
    assert C.merge_config({"defaults": None, "policy": None, "features": None})["features"] == {}
    assert C.DEFAULT_CONFIG["defaults"]["leakage_auc"] == 0.9 and C.DEFAULT_CONFIG["slice_factor"] == 2.0


def test_unknown_keys_and_non_mappings_are_named():
    assert error(lambda: C.merge_config({"binz": 3, "a": 1})) == (
        f"unknown drift config key(s) ['a', 'binz']; known: {sorted(C.DEFAULT_CONFIG)}")
    assert error(lambda: C.merge_config({"defaults": {"numerics": {}}})).startswith(
        "unknown drift.defaults key(s) ['numerics']; known: ['categorical', 'label', 'leakage_auc', 'numeric']")
    assert error(lambda: C.merge_config({"policy": {"act": "block"}})) == (
        "unknown drift.policy key(s) ['act']; known: ['action', 'features']")
    assert error(lambda: C.merge_config({"defaults": [1]})) == "drift.defaults keys must be a mapping, not [1]"


def test_binning_takes_the_binning_keys_and_the_schemas_first_slice():
    assert C.binning(SCHEMA) == {"bins": 20, "top_k": 10, "max_values": 10000, "slice_by": "c",
                                 "reference_max_rows": 1_000_000, "sample_seed": 0}
    assert C.binning(SCHEMA, {"slice_by": "n", "bins": 7})["slice_by"] == "n"
    unsliced = F.Schema(name="u", label="", features=SCHEMA.features)
    assert C.binning(unsliced)["slice_by"] is None
    assert error(lambda: C.binning(SCHEMA, {"slice_by": "zz"})) == (
        "drift.slice_by is 'zz', which is not a column of the schema s.yaml; "
        "name one of its features or declare `slices:` in the schema")


def test_monitored_features_are_the_numeric_and_categorical_ones():
    assert [f.name for f in C.monitored(SCHEMA)] == ["n", "c", "r"]


def test_thresholds_per_feature_from_kind_defaults_with_leakage_for_model_inputs_only():
    t = C.resolve_thresholds(SCHEMA)
    d = C.DEFAULT_CONFIG["defaults"]
    assert t["features"] == {
        "n": {"monitor": True, **d["numeric"], "single_feature_auc": 0.9},
        "c": {"monitor": True, **d["categorical"]},
        "r": {"monitor": True, **d["numeric"]},
        "y": {"monitor": True, **d["label"]}}
    assert {k: t[k] for k in C.DECISION_KEYS} == {"min_rows": 50, "min_slice_rows": 200, "slice_factor": 2.0,
                                                   "min_bin_rows": 30, "max_drifted_share": 0.3}
    over = C.resolve_thresholds(SCHEMA, {"features": {"n": {"ks": None, "monitor": False}, "y": {"linf": 0.5}},
                                         "defaults": {"leakage_auc": 0.7}, "min_rows": 5})
    assert over["features"]["n"] == {**t["features"]["n"], "ks": None, "monitor": False, "single_feature_auc": 0.7}
    assert over["features"]["y"] == {"monitor": True, "linf": 0.5} and over["min_rows"] == 5
    nolabel = F.Schema(name="t", label="", path="s.yaml", features=SCHEMA.features)
    nolabel.by_name.update(SCHEMA.by_name)
    assert set(C.resolve_thresholds(nolabel)["features"]) == {"n", "c", "r"}


def test_threshold_errors_name_the_feature_or_metric():
    assert error(lambda: C.resolve_thresholds(SCHEMA, {"features": {"k": {}, "zz": {}}})) == (
        "drift.features names unknown or unmonitored feature(s) ['k', 'zz'] of the schema s.yaml: remove them "
        "from the profile's drift.features (monitored: ['c', 'n', 'r', 'y'])")
    assert error(lambda: C.resolve_thresholds(SCHEMA, {"features": {"c": {"ks": 0.1}}})).startswith(
        "drift.features.c: unknown categorical metric(s) ['ks']; known: ['chi2', ")
    assert error(lambda: C.resolve_thresholds(SCHEMA, {"features": {"y": {"ks": 0.1}}})).startswith(
        "drift.features.y: unknown categorical metric(s) ['ks']")
    assert error(lambda: C.resolve_thresholds(SCHEMA, {"defaults": {"numeric": {"linf": 0.1}}})).startswith(
        "drift.defaults.numeric: unknown numeric metric(s) ['linf']; known: ")
    assert error(lambda: C.resolve_thresholds(SCHEMA, {"defaults": {"label": {"ks": 0.1}}})).startswith(
        "drift.defaults.label: unknown categorical metric(s) ['ks']")
    assert C.resolve_thresholds(SCHEMA, {"features": {"n": {"monitor": False}}})["features"]["n"]["monitor"] is False


def test_policy_defaults_to_alert_and_names_unknown_features_and_actions():
    assert C.resolve_policy(SCHEMA) == {"action": "alert", "features": {}}
    policy = C.resolve_policy(SCHEMA, {"policy": {"action": "block", "features": {"n": "alert", "y": "block",
                                                                                  "_table": "alert"}}})
    assert policy == {"action": "block", "features": {"n": "alert", "y": "block", "_table": "alert"}}
    assert error(lambda: C.resolve_policy(SCHEMA, {"policy": {"features": {"k": "block", "q": "block"}}})) == (
        "drift.policy.features names unknown feature(s) ['k', 'q']")
    assert error(lambda: C.resolve_policy(SCHEMA, {"policy": {"action": "stop", "features": {"n": "halt"}}})) == (
        "drift.policy actions must be one of ['alert', 'block'], not ['halt', 'stop']")
    nolabel = F.Schema(name="t", label="", features=SCHEMA.features)
    assert error(lambda: C.resolve_policy(nolabel, {"policy": {"features": {"y": "block"}}})).endswith("['y']")


def test_blocking_lists_each_breached_feature_whose_action_is_block_once_in_order():
    breaches = [{"feature": "c"}, {"feature": "n"}, {"feature": "c"}, {"feature": "y"}]
    assert C.blocking(breaches, {"action": "alert", "features": {"c": "block", "y": "block"}}) == ["c", "y"]
    assert C.blocking(breaches, {"action": "block", "features": {"n": "alert"}}) == ["c", "y"]
    assert C.blocking(breaches, {"action": "alert", "features": {}}) == []
    assert C.blocking([], {"action": "block", "features": {}}) == []
