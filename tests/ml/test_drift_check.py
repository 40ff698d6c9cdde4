"""The threshold rule (config read at every check, never frozen into the reference), config
errors that name the culprit, the drift policy, the stored reference in the registry and the
`python -m ml.drift --json` contract (only JSON on stdout; exit 0 clean, 1 drift, 2 input error)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ml import drift as D
from ml import registry
from ml.features import load_schema

ROOT = Path(__file__).resolve().parents[2]
TINY = Path(__file__).parent / "data/tiny_schema.yaml"


def _tiny_csv(path, n, seed, basket_scale=30.0, channel_app=0.33):
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["order_id", "basket_eur", "channel", "items", "coupon_code", "returned"])
        for k in range(n):
            channel = "app" if rng.random() < channel_app else ("web" if rng.random() < 0.7 else "store")
            w.writerow([f"O{k}", f"{rng.gamma(2, basket_scale):.2f}", channel, int(rng.integers(1, 8)), "",
                        int(rng.random() < 0.1)])
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    return {"dir": out, "ref": _tiny_csv(out / "ref.csv", 3000, 1), "same": _tiny_csv(out / "same.csv", 1000, 2),
            "mild": _tiny_csv(out / "mild.csv", 1000, 3, basket_scale=36.0),
            "shifted": _tiny_csv(out / "shifted.csv", 1000, 4, basket_scale=60.0, channel_app=0.7)}


@pytest.fixture
def stored(data, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"x")
    root = tmp_path / "registry"
    version = registry.register(root, model, {"metrics": {"auc": 0.8}})
    D.store_reference(registry.FolderRegistry(root), version, [data["ref"]], TINY)
    return root, version


def test_editing_a_threshold_changes_the_verdict_without_re_promotion(data, stored):
    root, version = stored
    reference = D.load_reference(registry.FolderRegistry(root), version)
    default = D.check_drift(reference, [data["mild"]], TINY)
    assert "basket_eur" in default["drifted"]  # a 20% scale change: KS well above 0.12
    ks = next(s["value"] for s in default["scores"] if s["feature"] == "basket_eur" and s["metric"] == "ks")
    relaxed = {"features": {"basket_eur": {"ks": round(ks + 0.05, 3), "js": 1.0, "psi": 5.0,
                                           "wasserstein_std": 5.0}}}
    again = D.check_drift(D.load_reference(registry.FolderRegistry(root), version), [data["mild"]], TINY, config=relaxed)
    assert again["ok"], again["breaches"]
    used = next(s for s in again["scores"] if s["feature"] == "basket_eur" and s["metric"] == "ks")
    assert used["threshold"] == round(ks + 0.05, 3)


def test_defaults_merge_key_by_key():
    schema = load_schema(str(TINY))
    limits = D.resolve_thresholds(schema, {"defaults": {"numeric": {"ks": 0.3}}})["features"]["basket_eur"]
    assert limits["ks"] == 0.3 and limits["js"] == D.DEFAULT_CONFIG["defaults"]["numeric"]["js"]
    assert limits["single_feature_auc"] == D.DEFAULT_CONFIG["defaults"]["leakage_auc"]  # a model input


@pytest.mark.parametrize("config, named", [
    ({"features": {"basket": {"ks": 0.1}}}, "basket"),
    ({"features": {"basket_eur": {"kss": 0.1}}}, "kss"),
    ({"features": {"channel": {"ks": 0.1}}}, "ks"),  # a numeric metric on a categorical feature
    ({"defaults": {"numeric": {"wasserstein_sd": 0.1}}}, "wasserstein_sd"),
    ({"defaults": {"numerical": {}}}, "numerical"),
    ({"slice_bye": "channel"}, "slice_bye"),
    ({"policy": {"action": "stop"}}, "stop"),
    ({"policy": {"features": {"basket": "block"}}}, "basket"),
])
def test_unknown_names_in_the_config_raise_naming_them(data, config, named):
    schema = load_schema(str(TINY))
    with pytest.raises(D.DriftError, match=named):
        D.resolve_thresholds(schema, config)
        D.resolve_policy(schema, config)


def test_policy_alert_by_default_block_where_configured(data):
    reference = D.build_reference([data["ref"]], TINY)
    alert = D.check_drift(reference, [data["shifted"]], TINY)
    assert not alert["ok"] and alert["blocked"] == []
    by_feature = D.check_drift(reference, [data["shifted"]], TINY,
                               config={"policy": {"features": {"channel": "block"}}})
    assert by_feature["blocked"] == ["channel"]
    everything = D.check_drift(reference, [data["shifted"]], TINY,
                               config={"policy": {"action": "block", "features": {"channel": "alert"}}})
    assert "basket_eur" in everything["blocked"] and "channel" not in everything["blocked"]
    clean = D.check_drift(reference, [data["same"]], TINY, config={"policy": {"action": "block"}})
    assert clean["ok"] and clean["blocked"] == []


def test_reference_in_the_registry_is_written_once_and_read_only(data, stored):
    root, version = stored
    values = registry.attachment_path(root, version, D.VALUES_ATTACHMENT)
    assert values.stat().st_mode & 0o222 == 0
    with pytest.raises(registry.RegistryError, match="already exists"):
        D.store_reference(registry.FolderRegistry(root), version, [data["ref"]], TINY)
    with pytest.raises(registry.RegistryError):
        registry.attachment_path(root, version, "nothing.parquet")


def test_a_reference_of_the_old_format_is_refused_clearly(tmp_path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"stats": {}, "thresholds": {}, "config": {}}))
    with pytest.raises(D.DriftError, match="build it again"):
        D.load_reference(old)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ml.drift", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_cli_json_only_json_on_stdout_and_exit_codes(data, tmp_path):
    saved = tmp_path / "ref.json"
    clean = _cli("--schema", TINY, "--reference", data["ref"], "--current", data["same"],
                 "--save-reference", saved, "--json")
    assert clean.returncode == 0, clean.stderr
    out = json.loads(clean.stdout)
    assert out["verdict"] == "ok" and out["ok"] is True and "OK" in clean.stderr
    assert {"feature", "slice", "metric", "value", "threshold", "breached"} <= set(out["scores"][0])
    drift = _cli("--schema", TINY, "--reference", saved, "--current", data["shifted"], "--json",
                 "--slice-by", "channel")
    assert drift.returncode == 1, drift.stderr
    out = json.loads(drift.stdout)
    assert out["verdict"] == "drift" and {"basket_eur", "channel"} <= set(out["drifted"])
    assert any(s["slice"].startswith("channel=") for s in out["scores"]) is False  # slices come from the reference
    bad = _cli("--schema", TINY, "--reference", saved, "--current", tmp_path / "missing.csv", "--json")
    assert bad.returncode == 2 and "error" in json.loads(bad.stdout)
    usage = _cli("--schema", TINY, "--json")
    assert usage.returncode == 2 and usage.stdout == ""


def test_cli_slices_and_human_output(data, tmp_path):
    run = _cli("--schema", TINY, "--reference", data["ref"], "--current", data["shifted"], "--slice-by", "channel",
               "--report", tmp_path / "r.html")
    assert run.returncode == 1
    assert "basket_eur" in run.stdout and "FAIL" in run.stdout and "coupon_code" not in run.stdout
    assert (tmp_path / "r.html").exists()


def test_a_p_value_breaches_below_its_threshold_a_distance_above(data):
    """chi2_pvalue is registered with breach="below": a small p-value is the alarm, not a large one."""
    reference = D.build_reference([data["ref"]], TINY)
    strict = {"features": {"channel": {"chi2_pvalue": 0.01, "linf": 1.0, "psi": 10.0}}}
    shifted = D.check_drift(reference, [data["shifted"]], TINY, config=strict)
    row = next(s for s in shifted["scores"] if s["feature"] == "channel" and s["slice"] == "all"
               and s["metric"] == "chi2_pvalue")
    assert row["value"] < 0.01 and row["breached"] and row["threshold"] == 0.01
    same = D.check_drift(reference, [data["same"]], TINY, config=strict)
    row = next(s for s in same["scores"] if s["feature"] == "channel" and s["slice"] == "all"
               and s["metric"] == "chi2_pvalue")
    assert row["value"] > 0.01 and not row["breached"]
    assert D.METRICS["categorical"]["chi2_pvalue"].breach == "below"
    assert D.METRICS["numeric"]["ks"].breach == "above"


def test_a_monitored_column_missing_from_the_data_always_breaches(data, tmp_path):
    reference = D.build_reference([data["ref"]], TINY)
    with open(data["same"], newline="") as handle:
        rows = list(csv.reader(handle))
    drop = rows[0].index("channel")
    path = tmp_path / "no_channel.csv"
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([r[:drop] + r[drop + 1:] for r in rows])
    result = D.check_drift(reference, [path], TINY)
    missing = [s for s in result["scores"] if s["feature"] == "channel" and s["slice"] == "all"]
    assert [(s["metric"], s["value"], s["threshold"], s["breached"]) for s in missing] == [("missing", 1.0, 0.5, True)]
    assert result["drifted"] == ["channel"] and not result["ok"]


def test_label_slices_and_small_batches_on_tiny_data(data, tmp_path):
    """The decisions the simulator tests make on six weeks, on tiny data (fast tier): a label-rate
    change is flagged on the label; a slice gets the feature's threshold times `slice_factor` and
    none below `min_slice_rows`; a batch under `min_rows` is scored but decides nothing."""
    config = {"slice_by": "channel", "min_slice_rows": 100, "slice_factor": 2.0}
    reference = D.build_reference([data["ref"]], TINY, config)
    with open(data["same"], newline="") as handle:
        rows = list(csv.reader(handle))
    label = rows[0].index("returned")
    for r in rows[1:][::3]:
        r[label] = "1"  # the return rate jumps from ~10 % to ~40 %
    relabelled = tmp_path / "relabelled.csv"
    with open(relabelled, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    result = D.check_drift(reference, [relabelled], TINY, config=config)
    assert "returned" in result["drifted"]
    linf = next(s for s in result["scores"] if s["feature"] == "returned" and s["metric"] == "linf")
    assert linf["slice"] == "all" and linf["breached"] and linf["value"] > 0.25

    shifted = D.check_drift(reference, [data["shifted"]], TINY, config=config)
    base = next(s["threshold"] for s in shifted["scores"]
                if s["feature"] == "basket_eur" and s["slice"] == "all" and s["metric"] == "ks")
    by_slice = {s["slice"]: s for s in shifted["scores"] if s["feature"] == "basket_eur" and s["metric"] == "ks"}
    assert set(by_slice) == {"all", "channel=web", "channel=app", "channel=store"}
    counts = shifted_counts(data["shifted"])
    for value, row in by_slice.items():
        if value == "all":
            continue
        big_enough = counts[value.split("=")[1]] >= 100
        assert row["threshold"] == (base * 2.0 if big_enough else None), (value, row)
    assert by_slice["channel=web"]["breached"]

    few = tmp_path / "few.csv"
    _tiny_csv(few, 30, 9, basket_scale=90.0)  # under min_rows (50): scored, nothing decided
    small = D.check_drift(reference, [few], TINY, config=config)
    assert small["ok"] and small["scores"] and all(s["threshold"] is None for s in small["scores"]
                                                    if s["feature"] != "_table")


def shifted_counts(path) -> dict:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    channel = rows[0].index("channel")
    out = {}
    for r in rows[1:]:
        out[r[channel]] = out.get(r[channel], 0) + 1
    return out
