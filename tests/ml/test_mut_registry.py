"""The registry's files as a person reads them: aliases.json and attachments as sorted, indented
JSON; attachments read-only (r--r--r--); values JSON cannot hold kept as text; a rollback without
a reason records an empty one; an alias move the history missed is restored (the fault tests kill a
process for this; they import TensorFlow and stay out of the mutation run)."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat

import pytest

from ml import registry


@pytest.fixture
def root(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"x")
    root = tmp_path / "registry"
    for _ in range(2):
        registry.register(root, model, {})
    return root


def test_aliases_file_is_indented_json(root):
    registry.promote(root, "v0001")
    registry.promote(root, "v0002")
    text = (root / "aliases.json").read_text()
    assert text == json.dumps({"champion": "v0002", "previous": "v0001"}, indent=2) + "\n"


def test_an_attachment_is_sorted_indented_read_only_json_with_other_values_as_text(root):
    path = registry.attach(root, "v0001", "blessing", {"b": 1, "a": dt.date(2024, 1, 2)})
    assert open(path).read() == '{\n  "a": "2024-01-02",\n  "b": 1\n}\n'
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o444
    assert registry.read_attachment(root, "v0001", "blessing") == {"a": "2024-01-02", "b": 1}


def test_a_rollback_without_a_reason_records_an_empty_one(root):
    registry.promote(root, "v0001", "first")
    registry.promote(root, "v0002")
    registry.rollback(root)
    assert [(h["action"], h["reason"]) for h in registry.history(root)] == [
        ("promote", "first"), ("promote", ""), ("rollback", "")]


def test_an_alias_move_the_history_missed_is_restored_before_the_next_move(root):
    registry.promote(root, "v0001", "first")
    # a promotion killed after replacing aliases.json and before appending its history line
    (root / "aliases.json").write_text(json.dumps({"champion": "v0002", "previous": "v0001"}))
    registry.rollback(root, "v0001", "back")
    assert [(h["action"], h["from"], h["to"], h["reason"]) for h in registry.history(root)] == [
        ("promote", None, "v0001", "first"),
        ("recovered", "v0001", "v0002", "alias moved by an interrupted promotion; history line restored"),
        ("rollback", "v0002", "v0001", "back")]
    recovered = registry.history(root)[1]
    assert recovered["alias"] == "champion" and recovered["at"] >= registry.history(root)[0]["at"]


def test_history_lines_are_rw_r__r__(root):
    old = os.umask(0o022)
    try:
        registry.promote(root, "v0001")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(root / "history.jsonl").st_mode) == 0o644


def test_a_version_is_read_only_files_and_folders_with_sorted_indented_metadata(tmp_path):
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"x")
    (model / "variables" / "data").write_bytes(b"y")
    root = tmp_path / "registry"
    version = registry.register(root, model, {"metrics": {"auc": 0.5}, "data_range": {"end": dt.date(2024, 1, 2)}})
    folder = root / "versions" / version
    modes = {p.relative_to(folder).as_posix(): stat.S_IMODE(os.stat(p).st_mode)
             for p in [folder / "model", *sorted((folder / "model").rglob("*")), folder / "metadata.json"]}
    assert modes == {"model": 0o555, "model/saved_model.pb": 0o444, "model/variables": 0o555,
                     "model/variables/data": 0o444, "metadata.json": 0o444}
    text = (folder / "metadata.json").read_text()
    record = json.loads(text)
    assert text == json.dumps(record, indent=2, sort_keys=True) + "\n"
    assert record["data_range"] == {"end": "2024-01-02"}


def test_temp_files_left_in_an_attachments_folder_are_cleaned_under_the_lock(root):
    leftover = root / "versions" / "v0001" / "attachments" / f"{registry._TMP_PREFIX}dead"
    leftover.write_bytes(b"half")
    registry.attach(root, "v0002", "note", {"a": 1})
    assert not leftover.exists()
