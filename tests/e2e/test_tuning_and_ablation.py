"""The tuning and ablation DAGs through real Airflow (dag.test) on the session's tiny data: the
transformed data of the session's static_training run (40 sensors, 14 days)."""

from __future__ import annotations

import json

import pytest

from scripts import airflow_env


@pytest.fixture(scope="module")
def transform_folder(static_training_run) -> str:
    return f"{static_training_run['run_dir']}/transform"


@pytest.fixture
def best_uri(config):
    """The tuning DAG stores its best parameters where the training DAGs read them: removed after the
    test, so later training runs of the session train with the profile's values."""
    from ml import storage

    uri = config["tuning"]["best_uri"]
    yield uri
    if storage.exists(uri):
        storage.filesystem(uri)[0].rm(storage.filesystem(uri)[1])


def _states(run) -> dict:
    out = {}
    for ti in run.get_task_instances():
        out.setdefault(ti.task_id, []).append(ti.state)
    return out


def test_tuning_maps_trials_over_one_study_and_stores_the_best(transform_folder, best_uri, config):
    from ml import storage, tuning

    dag = airflow_env.get_dag("tuning")
    run = dag.test(run_conf={"trials": 3, "transform": transform_folder})
    states = _states(run)
    assert run.state == "success", states
    assert states["trial"] == ["success"] * 3  # three mapped trial tasks

    trials_root = f"{config['storage']['artifacts']}/tuning/{tuning.run_key(run.run_id)}/trials"
    results = [json.loads(storage.read_text(f)) for f in storage.glob(f"{trials_root}/trial-*/trial.json")]
    assert len(results) == 3 and all(0.5 < r["value"] <= 1 for r in results)
    study = tuning.open_study(name=f"tuning-{tuning.run_key(run.run_id)}", storage_uri=config["tuning"]["study_storage"])
    assert sorted(t.number for t in study.trials) == [0, 1, 2]  # one shared study, one number per trial

    best = json.loads(storage.read_text(best_uri))
    assert best["value"] == max(r["value"] for r in results)
    assert best["source"] == "optuna" and set(best["params"]) == set(config["tuning"]["search_space"])
    params = tuning.training_params(training=config["training"], best_uri=best_uri)  # the next training run's
    assert params["learning_rate"] == best["params"]["learning_rate"]
    assert params["tuned_from"] == best_uri and params["epochs"] == config["training"]["epochs"]


def test_ablation_fans_out_retrains_and_reports_the_deltas(transform_folder, config):
    from ml import storage, tuning

    dag = airflow_env.get_dag("ablation")
    run = dag.test(run_conf={"features": ["lanes"], "seeds": [1], "transform": transform_folder})
    states = _states(run)
    assert run.state == "success", states
    assert states["retrain"] == ["success"] * 2  # the baseline and the run without `lanes`

    report = json.loads(storage.read_text(
        f"{config['storage']['artifacts']}/ablation/{tuning.run_key(run.run_id)}/report.json"))
    assert set(report["features"]) == {"lanes"} and report["baseline"]["mean"] > 0.5
    assert report["features"]["lanes"]["n"] == 1 and report["flagged"] == ["lanes"]  # one seed: no interval
    assert json.loads(storage.read_text(config["ablation"]["report_uri"]))["run_id"] == run.run_id
