"""Smoke tests: every benchmark runs end to end at a tiny size and its output checks hold.

No timing assertions (the machine is shared and tiny sizes measure start-up, not throughput):
only that the code paths work, the figures are produced, and outputs are identical where checked.
Data and results go to a temporary folder, not benchmarks/.data or benchmarks/results.
"""

from __future__ import annotations

import json

import pytest

from benchmarks import (
    batch_prediction,
    beam_transform,
    common,
    dag_parsing,
    input_pipeline,
    run,
    serving_bench,
    validate_bench,
)

TINY = 2400  # 100 sensors x 1 day


@pytest.fixture(autouse=True)
def bench_dirs(tmp_path_factory, monkeypatch):
    base = tmp_path_factory.getbasetemp() / "bench"
    for module in (common, input_pipeline, batch_prediction, validate_bench):
        monkeypatch.setattr(module, "DATA", base / "data", raising=False)
    monkeypatch.setattr(common, "RESULTS", base / "results")
    return base


def _figures_ok(result: dict) -> None:
    assert result["figures"]
    for f in result["figures"]:
        assert f["baseline_s"] > 0 and f["ours_s"] > 0 and f["ratio"] > 0
        assert f["met"] is None or isinstance(f["met"], bool)


def test_shape_for_reaches_the_row_count():
    sensors, days = common.shape_for(1_000_000)
    assert sensors <= common.MAX_SENSORS and 1_000_000 <= sensors * days * 24 < 1_000_000 + 24 * days
    assert common.shape_for(2400) == (100, 1)
    sensors, days = common.shape_for(240_000)
    assert sensors * days * 24 == 240_000


def test_b1_input_pipeline(bench_dirs):
    result = input_pipeline.run(rows=TINY, naive_rows=TINY, repeat=1)
    _figures_ok(result)
    assert result["rows"] == TINY  # every pipeline saw every row (checked inside run)
    limit = result["training_limit"]  # the same training from memory and through make_dataset
    assert limit["memory"]["steps"] == limit["tfrecords"]["steps"] == 5 * -(-TINY // input_pipeline.BATCH)
    assert 0 <= limit["tfrecords"]["input_share"] < 1 and "training run" in result["figures"][-1]["figure"]
    assert json.loads((bench_dirs / "results" / "input_pipeline.json").read_text())["rows"] == TINY


def test_b2_beam_transform_outputs_identical(bench_dirs):
    result = beam_transform.run(rows=TINY, repeat=1)
    _figures_ok(result)
    checks = result["checks"]
    assert checks["identical"] and checks["stats_match"]
    assert checks["train"]["a_c_identical_files"] and checks["eval"]["a_c_identical_files"]
    assert checks["train"]["rows"] + checks["eval"]["rows"] == result["rows"] == TINY
    assert set(result["arrow_phase_share"]) == {"read_clean_split_stats", "serialize", "write"}


def test_b3_dag_parsing(bench_dirs):
    result = dag_parsing.run(repeat=1, report=False, files=[dag_parsing.DAGS / "batch_prediction.py"])
    _figures_ok(result)
    assert result["files"]["batch_prediction.py"]["dags"] == ["batch_prediction"]


def test_b3_twin_keeps_future_import_first(tmp_path):
    twin = dag_parsing.make_twin(dag_parsing.DAGS / "static_training.py", tmp_path)
    code = twin.read_text()
    compile(code, str(twin), "exec")  # `from __future__` must stay the first statement
    assert "import tensorflow" in code and "import apache_beam" in code


def test_b4_batch_prediction(bench_dirs):
    result = batch_prediction.run(rows=TINY, baseline_rows=50, repeat=1, model_rows=TINY)
    _figures_ok(result)
    assert result["scores_match"] and result["idempotent"]
    assert result["rows"] == TINY
    report = result["trainer_bottleneck_report"]
    assert report["bound"] in ("input-bound", "compute-bound") and report["peak_rss_mb"] > 0
    assert all({"input_wait_s", "compute_s", "input_share"} <= set(e) for e in report["epochs"])


def test_b5_serving(bench_dirs):
    result = serving_bench.run(sensors=5, requests=60, rate=100, light_rate=50, log_repeat=1, model_rows=TINY)
    _figures_ok(result)
    runs = [result[k] for k in ("head", "tail", "head_light", "tail_light", "naive", "naive_light")]
    assert all(r["errors"] == 0 for r in runs)
    assert set(result["head"]["paths"]) == {"head"} and set(result["tail"]["paths"]) == {"tail"}
    assert result["logged_rows"] > 0  # the prediction log reached the warehouse


def test_runner_rejects_unknown_names():
    with pytest.raises(SystemExit):
        run.main(["--only", "B9"])


def test_validate_benchmark_decides_every_row(bench_dirs):
    result = validate_bench.run(rows=TINY, large_rows=TINY * 2)
    _figures_ok(result)
    assert result["rows"] == result["accepted"] == TINY  # every row of the clean file accepted
    assert result["large"]["rows"] == TINY * 2


def test_drift_bench_with_its_scale_case(bench_dirs, tmp_path):
    from benchmarks import drift_bench

    result = drift_bench.main(["--sensors", "5", "--repeat", "1", "--rows", "3000", "--out", str(tmp_path / "d.json")])
    _figures_ok(result)
    assert result["base"]["scores"] > 0 and result["doubled"]["monitored"] == 2 * result["base"]["monitored"]
    scale = result["scale"]
    assert scale["rows"] == 3000 and "n0" in scale["drifted"]  # the shifted column is caught
    assert (bench_dirs / "data" / "drift-scale-3000" / "reference.csv").exists()
