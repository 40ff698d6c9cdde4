"""The training DAGs' task bodies as plain functions: the run folder's layout, which data a run
trains on, what is recorded about a file set, and the promotion tail's checkpoint/promote/keep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ml import file_sets, gate, landing, registry, warehouse
from ml.promotion_job import champion_checkpoint, keep, promote
from ml.run_layout import RunLayout
from ml.training_job import (
    FileSetRejected,
    NothingToTrain,
    check_validation,
    find_data,
    pick_file_set,
    record_outcome,
    training_window,
)


def _land(root: Path, date: str, success: bool = True) -> list[str]:
    folder = root / f"dt={date}"
    folder.mkdir(parents=True)
    (folder / "part-00000.csv").write_text("a,b\n1,2\n")
    if success:
        (folder / landing.SUCCESS).write_text("")
    return [str(folder / "part-00000.csv")]


@pytest.fixture
def where(tmp_path: Path) -> dict:
    root = tmp_path / "landing"
    for date in ("2024-03-01", "2024-03-02", "2024-03-04"):
        _land(root, date)
    _land(root, "2024-03-03", success=False)
    validated = tmp_path / "validated"
    validated.mkdir()
    for name in ("dt=2024-03-01__part-00000.csv", "dt=2024-03-04__part-00000.csv", "dt=2024-03-04__part-00001.csv"):
        (validated / name).write_text("a\n1\n")
    return {"landing": root.as_uri(), "validated": validated.as_uri(), "registry": str(tmp_path / "registry"),
            "warehouse": {"kind": "duckdb", "path": str(tmp_path / "wh.duckdb"), "dataset": "prodml"},
            "tmp": tmp_path}


def _processed(warehouse_config: dict) -> dict:
    wh = warehouse.connect(warehouse_config)
    try:
        return file_sets.processed(wh)
    finally:
        wh.close()


def test_run_layout_is_spelled_once_and_keeps_templates():
    run = RunLayout.for_run("gs://b/artifacts", "static_training", "{{ ds_nodash }}")
    assert run.root == "gs://b/artifacts/static_training/{{ ds_nodash }}"
    assert run.validation == run.root + "/validation"
    assert run.drift_report == run.root + "/drift_report.html"
    assert run.transform == run.root + "/transform"
    assert run.train_files == run.root + "/transform/train/part-*.tfrecord"
    assert run.eval_files == run.root + "/transform/eval/part-*.tfrecord"
    assert run.stats == run.root + "/transform/stats.json"
    assert run.candidate == run.root + "/candidate"
    assert run.model == run.root + "/candidate/model"
    assert run.training_report == run.root + "/candidate/training.json"
    assert RunLayout.of_candidate(run.candidate) == run
    assert RunLayout.of_candidate("file:///x/run/candidate/") == RunLayout("file:///x/run")
    with pytest.raises(ValueError, match="candidate"):
        RunLayout.of_candidate("file:///x/run/model")


def test_find_data_takes_the_complete_partitions_of_the_window(where):
    found = find_data(end_date="2024-03-05", landing_uri=where["landing"], window_days=4)
    assert found["dates"] == ["2024-03-01", "2024-03-02", "2024-03-04"]  # 03-03 has no _SUCCESS
    assert [Path(f).parent.name for f in found["files"]] == ["dt=2024-03-01", "dt=2024-03-02", "dt=2024-03-04"]
    with pytest.raises(ValueError, match="no complete partition"):
        find_data(end_date="2024-03-01", landing_uri=where["landing"], window_days=3)


def test_pick_file_set_takes_the_oldest_unhandled_set_or_the_wanted_one(where):
    args = {"landing_uri": where["landing"], "registry_config": {"kind": "local", "root": where["registry"]},
            "warehouse_config": where["warehouse"]}
    assert pick_file_set(wanted=None, **args)["date"] == "2024-03-01"
    record_outcome(file_set="2024-03-01", promoted=True, run_id="r1", warehouse_config=where["warehouse"])
    picked = pick_file_set(wanted=None, **args)
    assert picked["date"] == "2024-03-02" and picked["files"][0].endswith("dt=2024-03-02/part-00000.csv")
    assert pick_file_set(wanted="2024-03-04", **args)["date"] == "2024-03-04"
    with pytest.raises(NothingToTrain, match="already processed"):
        pick_file_set(wanted="2024-03-01", **args)
    with pytest.raises(NothingToTrain, match="not complete"):
        pick_file_set(wanted="2024-03-03", **args)
    for date in ("2024-03-02", "2024-03-04"):
        record_outcome(file_set=date, promoted=False, run_id="r2", warehouse_config=where["warehouse"])
    with pytest.raises(NothingToTrain, match="nothing to do"):
        pick_file_set(wanted=None, **args)
    assert _processed(where["warehouse"]) == {"2024-03-01": "promoted", "2024-03-02": "kept", "2024-03-04": "kept"}


def test_sets_older_than_a_registered_models_data_are_not_news(where):
    model = where["tmp"] / "model"
    model.mkdir()
    (model / "saved_model.pb").write_text("x")
    registry.register(where["registry"], str(model), {"data_range": {"start": "2024-03-01", "end": "2024-03-02"}})
    picked = pick_file_set(wanted=None, landing_uri=where["landing"], registry_config={"kind": "local", "root": where["registry"]},
                           warehouse_config=where["warehouse"])
    assert picked["date"] == "2024-03-04"


def test_check_validation_passes_a_good_set_and_records_a_rejected_one(where):
    good = {"ok": True, "accepted": ["a.csv"], "rejected": []}
    assert check_validation(summary=good, file_set="2024-03-04", run_id="r", warehouse_config=where["warehouse"]) == good
    assert _processed(where["warehouse"]) == {}
    bad = {"ok": False, "accepted": [], "rejected": ["part-0.csv: column x missing", "part-1.csv: too many bad rows"]}
    with pytest.raises(FileSetRejected, match="dt=2024-03-04 rejected by validation") as rejected:
        check_validation(summary=bad, file_set="2024-03-04", run_id="r", warehouse_config=where["warehouse"])
    assert str(rejected.value).endswith("part-0.csv: column x missing | part-1.csv: too many bad rows")
    assert _processed(where["warehouse"]) == {"2024-03-04": "rejected"}


def test_training_window_takes_the_validated_rows_of_the_window_up_to_the_set(where):
    window = training_window(date="2024-03-04", landing_uri=where["landing"], validated_uri=where["validated"],
                             window_days=3)
    assert window["dates"] == ["2024-03-04"]  # 03-02 has no validated rows (rejected), 03-01 is out
    assert [Path(f).name for f in window["files"]] == ["dt=2024-03-04__part-00000.csv",
                                                        "dt=2024-03-04__part-00001.csv"]
    wide = training_window(date="2024-03-04", landing_uri=where["landing"], validated_uri=where["validated"],
                           window_days=4)
    assert wide["dates"] == ["2024-03-01", "2024-03-04"]


def test_champion_checkpoint_promote_and_keep(where):
    root = where["registry"]
    assert champion_checkpoint(registry_config={"kind": "local", "root": root}) == ""  # the very first model: no warm start
    model = where["tmp"] / "model"
    model.mkdir()
    (model / "saved_model.pb").write_text("x")
    version = registry.register(root, str(model), {"metrics": {"auc": 0.8}})
    with pytest.raises(gate.NotBlessedError):
        promote(version=version, registry_config={"kind": "local", "root": root}, reason="static_training")
    gate.store_blessing(registry.FolderRegistry(root), version, {"decision": "pass", "reasons": [], "checks": {}})
    assert promote(version=version, registry_config={"kind": "local", "root": root}, reason="static_training") == {"version": version,
                                                                                      "promoted": True}
    assert champion_checkpoint(registry_config={"kind": "local", "root": root}) == registry.get(root, "champion")["path"] + "/model.keras"
    decision = {"version": "v0002", "champion_version": version, "reasons": ["auc 0.5 < 0.75"]}
    assert keep(decision=decision, trained_by="dynamic_training", run_id="r9",
                warehouse_config=where["warehouse"]) == {"version": "v0002", "promoted": False}
    wh = warehouse.connect(where["warehouse"])
    try:
        alerts = [r for r in wh.run_sql_file("recent_alerts", {"limit": 10}).to_pylist()
                  if r["source"] == "gate.dynamic_training"]
    finally:
        wh.close()
    assert alerts and alerts[0]["severity"] == "warning" and f"champion {version} kept" in alerts[0]["message"]
    assert json.loads(alerts[0]["context"])["reasons"] == ["auc 0.5 < 0.75"]


def test_rollback_moves_the_champion_back_and_raises_an_alert(where):
    from ml.promotion_job import rollback

    root = where["registry"]
    section = {"kind": "local", "root": root}
    model = where["tmp"] / "model"
    model.mkdir()
    (model / "saved_model.pb").write_text("x")
    v1, v2 = (registry.register(root, str(model), {}) for _ in range(2))
    with pytest.raises(registry.RegistryError, match="nothing to roll back to"):
        rollback(version=None, reason="none yet", registry_config=section, warehouse_config=where["warehouse"])
    registry.promote(root, v1)
    registry.promote(root, v2)
    assert rollback(version=None, reason="bad day", registry_config=section,
                    warehouse_config=where["warehouse"]) == {"champion": v1, "previous": v2}
    wh = warehouse.connect(where["warehouse"])
    try:
        alerts = [r for r in wh.run_sql_file("recent_alerts", {"limit": 10}).to_pylist()
                  if r["source"] == "registry.rollback"]
    finally:
        wh.close()
    assert len(alerts) == 1 and f"from {v2} to {v1}" in alerts[0]["message"]
