"""ml.compress on a small trained model (tests/ml/small_data.py: normalize, string and integer lookups,
a hashed id; 3 epochs): the builtin-ops rewrite scores like the SavedModel, each quantized variant's
size and AUC delta are measured on held-out eval rows, only the variants inside the budget are
attached to the version, and the serving loader predicts from raw columns."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ml import compress, registry

pytestmark = pytest.mark.slow  # trains a model (~10 s), converts four variants (~10 s)


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    from ml import trainer
    from tests.ml import small_data

    folder = tmp_path_factory.mktemp("compress")
    data = small_data.write(folder, train_rows=4000, eval_rows=3000)
    trainer.run(["--train", data["train"], "--eval", data["eval"], "--stats", data["stats"], "--schema",
                 data["schema"], "--output", str(folder / "candidate"), "--epochs", "3", "--batch_size", "128",
                 "--learning_rate", "0.01", "--hidden_units", "32,16"])
    root = str(folder / "registry")
    version = registry.register(root, str(folder / "candidate" / "model"), {"artifacts": str(folder), "metrics": {}})
    report = compress.compress(registry_config={"kind": "local", "root": root}, schema_path=data["schema"],
                               version=version, max_auc_drop=0.005, calibration_rows=256, seed=0)
    print(compress.table(report))
    return {"report": report, "root": root, "version": version, "data": data}


def test_the_rewrite_scores_like_the_savedmodel(compressed):
    float32 = compressed["report"]["variants"]["float32"]
    assert float32["max_abs_score_diff"] < 1e-5 and abs(float32["auc_delta"]) < 1e-5


def test_each_variant_is_measured_on_held_out_rows(compressed):
    """Measured: SavedModel 99.6 kB (without model.keras), AUC 0.8896 on 2,744 held-out rows;
    dynamic range 14.4 kB, delta 0.0000; float16 12.3 kB, -0.0000; int8 12.2 kB, +0.00015."""
    report = compressed["report"]
    assert report["rows"] == 3000 - 256 and report["calibration_rows"] == 256
    assert report["saved_model"]["auc"] > 0.8
    variants = report["variants"]
    assert set(variants) == {"float32", "dynamic_range", "float16", "int8"}
    for name in ("dynamic_range", "float16", "int8"):
        assert variants[name]["bytes"] < report["saved_model"]["bytes"] / 3
        assert variants[name]["auc_delta"] == pytest.approx(report["saved_model"]["auc"] - variants[name]["auc"],
                                                            abs=1e-6)
    assert abs(variants["dynamic_range"]["auc_delta"]) < 0.002 and abs(variants["float16"]["auc_delta"]) < 0.001
    assert variants["int8"]["bytes"] <= variants["float16"]["bytes"]
    assert abs(variants["int8"]["auc_delta"]) < 0.05  # int8 activations cost a little more


def test_only_variants_inside_the_budget_are_attached(compressed):
    report = compressed["report"]
    inside = sorted(v for v, r in report["variants"].items() if v != "float32" and r["auc_delta"] <= 0.005)
    assert sorted(report["attached"]) == inside and "float32" not in report["attached"]
    record = registry.get(compressed["root"], compressed["version"])
    assert {f"model_{v}.tflite" for v in inside} | {"compression"} == set(record["attachments"])
    assert registry.read_attachment(compressed["root"], compressed["version"], "compression")["attached"] == inside
    # a second run does not rewrite create-once attachments: the stored report comes back
    again = compress.compress(registry_config={"kind": "local", "root": compressed["root"]},
                              schema_path=compressed["data"]["schema"], version=compressed["version"])
    assert again == report


def test_a_variant_outside_the_budget_is_not_attached(compressed, tmp_path):
    """The same model as another version, with a budget no variant meets (every one loses some AUC or
    none): the report is attached, no model file is."""
    root = compressed["root"]
    model_dir = registry.get(root, compressed["version"])["path"]
    artifacts = registry.get(root, compressed["version"])["artifacts"]
    version = registry.register(root, model_dir, {"artifacts": artifacts, "metrics": {}})
    report = compress.compress(registry_config={"kind": "local", "root": root},
                               schema_path=compressed["data"]["schema"], version=version, max_auc_drop=-0.01,
                               calibration_rows=256, seed=0)
    assert report["attached"] == [] and registry.get(root, version)["attachments"] == ["compression"]
    assert set(report["variants"]) == {"float32", "dynamic_range", "float16", "int8"}


def test_the_serving_loader_predicts_from_raw_columns(compressed):
    """load_tflite(uri) on the attached file: raw strings, ints and floats (None allowed) in, the same
    probabilities as the SavedModel out (within the variant's quantization error)."""
    from ml import features as F
    from ml.evaluate import read_eval_examples
    from ml.predict import load_model, score_columns

    [variant, *_] = compressed["report"]["attached"]
    uri = registry.attachment_path(compressed["root"], compressed["version"], f"model_{variant}.tflite")
    predict = compress.load_tflite(str(uri))
    schema = F.load_schema(compressed["data"]["schema"])
    columns, _ = read_eval_examples(compressed["data"]["eval"], schema)
    columns = {k: v[:300] for k, v in columns.items()}
    model_dir = registry.get(compressed["root"], compressed["version"])["path"]
    expected = score_columns(load_model(model_dir), columns)
    raw = {"signal": columns["signal"].ravel().tolist(), "noise": columns["noise"].ravel().tolist(),
           "kind": [b.decode() for b in columns["kind"].ravel()], "slot": columns["slot"].ravel().tolist(),
           "site": [b.decode() for b in columns["site"].ravel()]}
    assert np.abs(predict(raw) - expected).max() < 0.02
    raw["noise"][0], raw["kind"][1], raw["site"][2] = None, "unseen", None  # missing and unknown values
    scores = predict(raw)
    assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()
    assert json.loads(open(f"{uri}.json").read())["inputs"]["site"]["hash"]["num_bins"] == 64
