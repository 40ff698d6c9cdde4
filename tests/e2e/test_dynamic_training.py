"""dynamic_training, the gate and rollback through real Airflow runs (dag.test), on the session's
champion: a new normal set, a rerun of it, a logging-format change, a bad candidate, a rollback."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from scripts import airflow_env

NEW_DAYS = {"2026-11-15": "normal", "2026-11-16": "logging_format_change", "2026-11-17": "normal"}


def _states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def _processed(config) -> dict[str, str]:
    from ml import file_sets, warehouse

    wh = warehouse.connect(config["warehouse"])
    try:
        return file_sets.processed(wh)
    finally:
        wh.close()


@pytest.fixture(scope="module")
def dynamic(static_training_run, landed, config):
    from ml import registry, simulate
    from ml.storage import to_path

    simulate.simulate(str(landed["bucket"]), "2026-11-15", len(NEW_DAYS), seed=3, sensors=landed["sensors"],
                      scenarios={d: s for d, s in NEW_DAYS.items() if s != "normal"})
    root = config["registry"]["root"]
    raw = to_path(config["storage"]["landing"]) / "dt=2026-11-16" / "part-00000.csv"
    raw_hash = hashlib.sha256(raw.read_bytes()).hexdigest()
    dag = airflow_env.get_dag("dynamic_training")
    out = {"champion_before": registry.get(root, "champion")["version"], "raw": raw, "raw_hash": raw_hash}
    out["normal"] = _states(dag.test(run_conf={"file_set": "2026-11-15"}))
    out["champion_after_normal"] = registry.get(root, "champion")["version"]
    out["rerun"] = _states(dag.test(run_conf={"file_set": "2026-11-15"}))
    out["rejected"] = _states(dag.test(run_conf={"file_set": "2026-11-16"}))
    out["champion_after_rejected"] = registry.get(root, "champion")["version"]
    out["bad"] = _states(dag.test(run_conf={"file_set": "2026-11-17", "shuffle_labels": True}))
    out["champion_after_bad"] = registry.get(root, "champion")["version"]
    out["versions"] = registry.list_versions(root)
    return out


def test_new_file_set_is_retrained_gated_and_recorded(dynamic, config):
    from ml import registry

    states = dynamic["normal"]
    assert states["validate"] == states["train"] == states["gate"] == "success"
    assert {states["promote"], states["keep"]} == {"success", "skipped"}
    assert _processed(config)["2026-11-15"] in ("promoted", "kept")
    candidate = next(v for v in dynamic["versions"] if v["data_range"]["end"] == "2026-11-15")
    blessing = registry.read_attachment(config["registry"]["root"], candidate["version"], "blessing")
    assert blessing["decision"] in ("pass", "fail") and "infra" in blessing["checks"]
    assert candidate["training"]["warm_start"]  # warm start from the champion's checkpoint
    assert candidate["training"]["bound"] in ("input-bound", "compute-bound")
    expected = candidate["version"] if blessing["decision"] == "pass" else dynamic["champion_before"]
    assert dynamic["champion_after_normal"] == expected


def test_rerun_of_a_processed_file_set_is_skipped(dynamic):
    assert dynamic["rerun"]["pick_file_set"] == "skipped"
    assert dynamic["rerun"]["train"] == "skipped"


def test_logging_format_change_is_rejected_before_training(dynamic, config):
    from ml.storage import to_path

    states = dynamic["rejected"]
    assert states["check_validation"] == "failed"
    assert states["train"] in ("upstream_failed", "None") and states["transform"] in ("upstream_failed", "None")
    assert dynamic["champion_after_rejected"] == dynamic["champion_after_normal"]
    assert _processed(config)["2026-11-16"] == "rejected"
    # nothing is lost: the raw file is untouched and the rows are in quarantine with their reason
    assert hashlib.sha256(dynamic["raw"].read_bytes()).hexdigest() == dynamic["raw_hash"]
    quarantined = list(to_path(config["storage"]["quarantine"]).glob("dt=2026-11-16/*.csv"))
    assert quarantined and "avg_speed_kmh" in quarantined[0].read_text()


def test_a_worse_candidate_never_becomes_champion(dynamic, config):
    from ml import registry

    states = dynamic["bad"]
    assert states["gate"] == "success" and states["keep"] == "success" and states["promote"] == "skipped"
    assert dynamic["champion_after_bad"] == dynamic["champion_after_rejected"]
    bad = next(v for v in dynamic["versions"] if v["data_range"]["end"] == "2026-11-17")
    assert bad["training"]["shuffled_labels"]
    blessing = registry.read_attachment(config["registry"]["root"], bad["version"], "blessing")
    assert blessing["decision"] == "fail" and blessing["reasons"]
    assert _processed(config)["2026-11-17"] == "kept"


def test_rollback_dag_restores_the_previous_champion_and_batch_prediction_uses_it(dynamic, config):
    from ml import registry

    root = config["registry"]["root"]
    original = registry.aliases(root)["champion"]
    if registry.aliases(root).get("previous") is None:  # every candidate so far was kept: make one champion
        newest = dynamic["versions"][-1]["version"]
        registry.promote(root, newest, reason="test setup: an operator promoted by hand")
    before = registry.aliases(root)
    run = airflow_env.get_dag("rollback").test(run_conf={"reason": "test"})
    assert run.state == "success"
    after = registry.aliases(root)
    assert after["champion"] == before["previous"] and after["previous"] == before["champion"]
    assert registry.history(root)[-1]["action"] == "rollback"
    batch = airflow_env.get_dag("batch_prediction").test(logical_date=dt.datetime(2026, 11, 18, tzinfo=dt.UTC))
    assert batch.state == "success"
    from ml import warehouse

    wh = warehouse.connect(config["warehouse"])
    try:
        row = wh.run_sql_file("prediction_counts", {"target_date": "2026-11-18"}).to_pylist()[0]
    finally:
        wh.close()
    assert row["model_version"] == after["champion"]
    if registry.aliases(root)["champion"] != original:
        registry.rollback(root, original, reason="test cleanup")  # leave the champion as found


def test_story_table_matches_the_ground_truth(dynamic, config):
    from ml import registry, story, warehouse
    from ml.storage import to_path

    wh = warehouse.connect(config["warehouse"])
    try:
        rows = story.build(registry.connect(config["registry"]), wh, str(to_path(config["storage"]["bucket"]) / "ground_truth.json"))
    finally:
        wh.close()
    by_day = {r["day"]: r for r in rows if r["day"] != "-"}
    assert by_day["2026-11-16"]["event"] == "logging_format_change" and by_day["2026-11-16"]["outcome"] == "rejected"
    assert "validation" in by_day["2026-11-16"]["alerts"]
    assert by_day["2026-11-17"]["event"] == "normal + bad candidate" and by_day["2026-11-17"]["outcome"] == "kept"
    assert "gate" in by_day["2026-11-17"]["alerts"]
    assert by_day["2026-11-15"]["outcome"] in ("promoted", "kept")
    assert "2026-11-16" in story.format_table(rows)


def test_sensor_sees_a_file_set_only_with_its_success_marker(config, tmp_path):
    dag = airflow_env.get_dag("dynamic_training")
    sensor = dag.get_task("wait_for_file_set")
    assert sensor.deferrable and sensor.soft_fail and sensor.timeout < 30 * 60  # shorter than the schedule
    sensor.filepath = str(tmp_path / "dt=*" / "_SUCCESS")
    (tmp_path / "dt=2026-12-01").mkdir()
    (tmp_path / "dt=2026-12-01" / "part-00000.csv").write_text("a\n1\n")
    assert not sensor.poke({})
    (tmp_path / "dt=2026-12-01" / "_SUCCESS").write_text("")
    assert sensor.poke({})
