"""The registry's files as a person reads them: aliases.json and attachments as sorted, indented
JSON; attachments read-only (r--r--r--); values JSON cannot hold kept as text; a rollback without
a reason records an empty one."""

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
