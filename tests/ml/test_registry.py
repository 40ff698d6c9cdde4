"""The local registry: immutable versions, atomic alias moves, append-only history, CLI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ml import registry
from ml.config import PROJECT_ROOT
from ml.registry import RegistryError


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A stand-in SavedModel folder (the registry only copies it)."""
    folder = tmp_path / "export"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"graph")
    (folder / "variables" / "variables.index").write_bytes(b"index")
    return folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "registry"


def _register(root, model_dir, auc=0.8, **extra):
    meta = {"metrics": {"auc": auc}, "data_range": {"start": "2024-01-01", "end": "2024-01-07"},
            "schema_hash": "abc123", **extra}
    return registry.register(root, model_dir, meta)


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".tmp-")]


def test_register_creates_immutable_versions(root, model_dir):
    v1 = _register(root, model_dir)
    v2 = _register(root, model_dir)  # same content: still a new version
    assert (v1, v2) == ("v0001", "v0002")

    record = registry.get(root, v1)
    assert record["version"] == "v0001"
    assert record["metrics"] == {"auc": 0.8}
    assert record["schema_hash"] == "abc123" and record["parent_version"] is None
    assert record["created_at"].endswith("+00:00")
    model = Path(record["path"])
    assert (model / "saved_model.pb").read_bytes() == b"graph"
    assert record["uri"] == model.resolve().as_uri()

    # Read-only bits signal immutability (root ignores them, so check bits, and writes if not root).
    version_dir = root / "versions" / v1
    for path in [version_dir, version_dir / "metadata.json", model, model / "saved_model.pb"]:
        assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), path
    if os.geteuid() != 0:
        with pytest.raises(PermissionError):
            (model / "saved_model.pb").write_bytes(b"tampered")
    assert _leftovers(root) == []


def test_register_refuses_reserved_keys_and_missing_model(root, model_dir, tmp_path):
    with pytest.raises(RegistryError, match="set by the registry"):
        registry.register(root, model_dir, {"version": "v0009"})
    with pytest.raises(RegistryError, match="does not exist"):
        registry.register(root, tmp_path / "nope", {})
    assert registry.list_versions(root) == []


def test_register_never_reuses_a_number_and_cleans_crash_leftovers(root, model_dir):
    _register(root, model_dir)
    # A register killed mid-copy leaves a temp folder: it is not a version, and is cleaned up.
    (root / "versions" / ".tmp-dead").mkdir()
    (root / "versions" / ".tmp-dead" / "half").write_text("x")
    assert [r["version"] for r in registry.list_versions(root)] == ["v0001"]
    assert _register(root, model_dir) == "v0002"
    assert _leftovers(root) == []


def test_promote_and_rollback(root, model_dir):
    v1, v2, v3 = (_register(root, model_dir, auc=a) for a in (0.7, 0.8, 0.9))
    assert registry.aliases(root) == {"champion": None, "previous": None}

    assert registry.promote(root, v1, "first") == {"champion": v1, "previous": None}
    assert registry.promote(root, v2) == {"champion": v2, "previous": v1}
    assert registry.promote(root, v2) == {"champion": v2, "previous": v1}  # retry: no-op
    assert registry.get(root)["version"] == v2
    assert registry.get(root, "previous")["version"] == v1

    # Rollback to previous: the rolled-back champion becomes previous.
    assert registry.rollback(root, reason="bad deploy") == {"champion": v1, "previous": v2}
    # Rollback to an explicit version.
    assert registry.rollback(root, v3, reason="pick v3") == {"champion": v3, "previous": v1}
    assert registry.rollback(root, "3") == {"champion": v3, "previous": v1}  # already champion

    listed = {r["version"]: r["aliases"] for r in registry.list_versions(root)}
    assert listed == {v1: ["previous"], v2: [], v3: ["champion"]}

    moves = [(h["action"], h["from"], h["to"], h["reason"]) for h in registry.history(root)]
    assert moves == [
        ("promote", None, v1, "first"),
        ("promote", v1, v2, ""),
        ("rollback", v2, v1, "bad deploy"),
        ("rollback", v1, v3, "pick v3"),
    ]
    assert all(h["alias"] == "champion" for h in registry.history(root))


def test_aliases_file_always_valid_and_no_temp_files(root, model_dir):
    versions = [_register(root, model_dir) for _ in range(3)]
    for v in versions * 2:
        registry.promote(root, v)
        assert json.loads((root / "aliases.json").read_text())["champion"] == v
        assert _leftovers(root) == []
    lines = (root / "history.jsonl").read_text().splitlines()
    assert len(lines) == 6 and all(json.loads(line)["action"] == "promote" for line in lines)


def test_history_is_append_only(root, model_dir):
    v1, v2 = _register(root, model_dir), _register(root, model_dir)
    registry.promote(root, v1)
    before = (root / "history.jsonl").read_bytes()
    registry.promote(root, v2)
    registry.rollback(root)
    after = (root / "history.jsonl").read_bytes()
    assert after.startswith(before) and len(after.splitlines()) == 3


def test_errors(root, model_dir):
    with pytest.raises(RegistryError, match="not set"):
        registry.get(root)  # empty registry: no champion
    v1 = _register(root, model_dir)
    with pytest.raises(RegistryError, match="unknown version"):
        registry.get(root, "v0042")
    with pytest.raises(RegistryError, match="neither a version"):
        registry.get(root, "latest")
    with pytest.raises(RegistryError, match="unknown version"):
        registry.promote(root, "v0042")
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback(root)
    registry.promote(root, v1)
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback(root)  # a champion but no previous one
    assert registry.aliases(root) == {"champion": v1, "previous": None}


def test_attach_once_only(root, model_dir):
    v1 = _register(root, model_dir)
    registry.promote(root, v1)
    path = registry.attach(root, v1, "blessing", {"gate": "passed", "auc": 0.8})
    assert Path(path).name == "blessing.json"
    assert registry.read_attachment(root, "champion", "blessing") == {"auc": 0.8, "gate": "passed"}
    assert registry.get(root, v1)["attachments"] == ["blessing"]
    with pytest.raises(RegistryError, match="already exists"):
        registry.attach(root, v1, "blessing", {"gate": "failed"})
    assert registry.read_attachment(root, v1, "blessing")["gate"] == "passed"
    with pytest.raises(RegistryError, match="invalid attachment name"):
        registry.attach(root, v1, "../escape", {})
    with pytest.raises(RegistryError, match="no attachment"):
        registry.read_attachment(root, v1, "reference_stats")
    assert _leftovers(root) == []


def test_fault_point_kills_only_when_named(root, model_dir, monkeypatch):
    # Not named: a no-op. (Killing is exercised in subprocesses by the fault-injection tests.)
    monkeypatch.setenv("PRODML_FAULT_POINT", "promote.somewhere_else")
    v1 = _register(root, model_dir)
    assert registry.promote(root, v1)["champion"] == v1
    assert "promote.after_write_temp" in registry.FAULT_POINTS


def test_crash_after_temp_write_keeps_old_aliases(root, model_dir):
    v1, v2 = _register(root, model_dir), _register(root, model_dir)
    registry.promote(root, v1)
    code = f"from ml import registry; registry.promote({str(root)!r}, {v2!r})"
    env = {**os.environ, "PRODML_FAULT_POINT": "promote.after_write_temp", "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=PROJECT_ROOT)
    assert proc.returncode == -9
    assert registry.aliases(root)["champion"] == v1  # the replace never happened
    # The lock died with the process; the next move succeeds and removes the orphaned temp file.
    assert registry.promote(root, v2)["champion"] == v2
    assert _leftovers(root) == []


def test_cli_list_show_rollback_history(root, model_dir, capsys):
    assert registry.main(["--root", str(root), "list"]) == 0
    assert capsys.readouterr().out.strip() == "no versions registered"

    v1, v2 = _register(root, model_dir, auc=0.75), _register(root, model_dir, auc=0.8, parent_version="v0001")
    registry.promote(root, v1)
    registry.promote(root, v2)
    assert registry.main(["--root", str(root), "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["VERSION", "ALIASES", "CREATED", "AUC", "PARENT"]
    assert out[1].split()[:2] == ["v0001", "previous"] and "0.7500" in out[1]
    assert out[2].split()[:2] == ["v0002", "champion"] and out[2].split()[-1] == "v0001"

    assert registry.main(["--root", str(root), "show"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == v2
    assert registry.main(["--root", str(root), "rollback", "--reason", "drill"]) == 0
    assert json.loads(capsys.readouterr().out) == {"champion": v1, "previous": v2}
    assert registry.main(["--root", str(root), "history"]) == 0
    assert "rollback" in capsys.readouterr().out.splitlines()[-1]
    assert registry.main(["--root", str(root), "show", "v0099"]) == 1
    assert "unknown version" in capsys.readouterr().err


def test_cli_empty_registry_subprocess(tmp_path):
    env = {**os.environ, "PRODML_DATA": str(tmp_path), "PRODML_PROFILE": "local"}
    proc = subprocess.run([sys.executable, "-m", "ml.registry", "list"], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "no versions registered"


_ALIAS_READER = """
import json, os, sys
path, stop = sys.argv[1], sys.argv[2]
reads = bad = 0
print("ready", flush=True)
while not os.path.exists(stop):
    try:
        with open(path) as handle:
            aliases = json.load(handle)
        assert set(aliases) == {"champion", "previous"}
    except (OSError, ValueError, AssertionError):
        bad += 1
    reads += 1
print(json.dumps({"reads": reads, "bad": bad}), flush=True)
"""


def test_a_reader_never_sees_a_torn_alias_file_during_promotions(root, model_dir, tmp_path):
    """Another process reading aliases.json in a loop while promotions run sees the old or the new
    aliases, never a missing, empty or half-written file: the move is a rename, not a copy."""
    versions = [_register(root, model_dir) for _ in range(3)]
    registry.promote(root, versions[0])
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", _ALIAS_READER, str(root / "aliases.json"), str(stop)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "ready"
        for i in range(300):
            registry.promote(root, versions[(i + 1) % 3])
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=60)
    counts = json.loads(out)
    assert counts["reads"] > 0 and counts["bad"] == 0, counts
    assert len(registry.history(root)) == 301


def test_connect_picks_the_backend_from_the_kind(tmp_path):
    from ml.bucket_registry import BucketRegistry

    assert isinstance(registry.connect({"kind": "local", "root": str(tmp_path)}), registry.FolderRegistry)
    assert isinstance(registry.connect({"root": str(tmp_path)}), registry.FolderRegistry)  # the default
    assert isinstance(registry.connect({"kind": "bucket", "root": str(tmp_path)}), BucketRegistry)
    with pytest.raises(registry.RegistryError, match="kind must be one of"):
        registry.connect({"kind": "vertex", "root": str(tmp_path)})


def test_a_version_the_gate_failed_is_restored_only_when_forced(root, model_dir, capsys):
    from ml import gate

    v1, v2, v3 = (_register(root, model_dir, auc=a) for a in (0.75, 0.8, 0.5))
    registry.attach(root, v3, gate.BLESSING, {"decision": "fail", "reasons": ["auc 0.5 < min_auc 0.7"]})
    registry.attach(root, v2, gate.BLESSING, {"decision": "pass", "reasons": []})
    registry.promote(root, v1)
    registry.promote(root, v2)
    assert registry.main(["--root", str(root), "rollback", "--version", v3]) == 1
    assert "refusing to restore v0003: the gate failed it (auc 0.5 < min_auc 0.7)" in capsys.readouterr().err
    assert registry.get(root, "champion")["version"] == v2  # untouched
    assert registry.main(["--root", str(root), "rollback", "--version", v1]) == 0  # no blessing: not held against
    capsys.readouterr()
    assert registry.main(["--root", str(root), "rollback", "--version", v3, "--force"]) == 0
    assert registry.get(root, "champion")["version"] == v3


def test_the_cli_process_refuses_a_failed_version_with_a_message_not_a_traceback(root, model_dir):
    import subprocess
    import sys

    from ml import gate

    v1, v2 = (_register(root, model_dir, auc=a) for a in (0.75, 0.5))
    registry.attach(root, v2, gate.BLESSING, {"decision": "fail", "reasons": ["auc 0.5 < min_auc 0.7"]})
    registry.promote(root, v1)
    done = subprocess.run([sys.executable, "-m", "ml.registry", "--root", str(root), "rollback", "--version", v2],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: refusing to restore v0002: the gate failed it")


def test_register_refuses_a_version_folder_that_exists_and_leaves_no_temp_copy(root, model_dir, monkeypatch):
    # numbering cannot pick an existing folder today; if it ever did (a numbering bug, a folder made
    # by hand), rename() would replace an empty one silently: register refuses and cleans its copy
    v1 = _register(root, model_dir)
    monkeypatch.setattr(registry, "_version_numbers", lambda root: [])
    with pytest.raises(RegistryError, match=f"version {v1} already exists in {root}"):
        _register(root, model_dir)
    assert _leftovers(root) == []
    assert [p.name for p in (root / "versions").iterdir()] == [v1]
