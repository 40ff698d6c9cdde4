"""The storage backend (ml.storage) and the bucket registry (ml.bucket_registry), each test run on a
local folder and on a Cloud Storage bucket (the GCS emulator, with generation preconditions)."""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from ml import registry, storage
from ml.bucket_registry import BucketRegistry
from tests.gcp import emulators


@pytest.fixture(params=["folder", "gcs"])
def root(request, tmp_path) -> str:
    if request.param == "folder":
        return str(tmp_path / "store")
    gcs = request.getfixturevalue("gcs_emulator")  # `-k "not gcs"`: the folder half alone (make mutate)
    name = f"b-{uuid.uuid4().hex[:12]}"
    emulators.create_bucket(gcs, name)
    return f"gs://{name}/prodml"


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "model"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"graph")
    (folder / "variables" / "variables.index").write_bytes(b"index")
    return folder


def test_read_write_list_glob_and_folders(root, tmp_path):
    storage.write_text(storage.join(root, "landing/dt=2026-01-02/part-0.csv"), "a\n1\n")
    storage.write_text(storage.join(root, "landing/dt=2026-01-02/_SUCCESS"), "")
    storage.write_text(storage.join(root, "landing/dt=2026-01-01/part-0.csv"), "a\n2\n")
    assert storage.read_text(storage.join(root, "landing/dt=2026-01-02/part-0.csv")) == "a\n1\n"
    assert storage.exists(storage.join(root, "landing/dt=2026-01-02/_SUCCESS"))
    assert not storage.exists(storage.join(root, "landing/dt=2026-01-03/_SUCCESS"))
    found = storage.glob(storage.join(root, "landing/dt=*/*.csv"))
    assert [storage.name(f) for f in found] == ["part-0.csv", "part-0.csv"]
    assert found[0].startswith(root.split("://")[0]) and "dt=2026-01-01" in found[0]  # sorted, same kind of URI
    assert [storage.name(u) for u in storage.listdir(storage.join(root, "landing"))] == ["dt=2026-01-01",
                                                                                          "dt=2026-01-02"]
    from ml import landing

    assert list(landing.complete_partitions(storage.join(root, "landing"))) == ["2026-01-02"]

    local = tmp_path / "out"
    (local / "sub").mkdir(parents=True)
    (local / "sub" / "x.bin").write_bytes(b"\x00\x01")
    storage.put_dir(local, storage.join(root, "copy"))
    with storage.local_copy(storage.join(root, "copy")) as copied:
        assert (copied / "sub" / "x.bin").read_bytes() == b"\x00\x01"
    with storage.staged_output(storage.join(root, "staged")) as folder:
        (folder / "a.txt").write_text("staged")
    assert storage.read_text(storage.join(root, "staged/a.txt")) == "staged"
    with storage.local_files(storage.join(root, "landing/dt=*/part-*.csv")) as files:
        assert sorted(f.read_text() for f in files) == ["a\n1\n", "a\n2\n"]
    assert storage.size_bytes(storage.join(root, "copy")) == 2


def test_conditional_writes_are_compare_and_swap(root):
    uri = storage.join(root, "aliases.json")
    assert storage.generation(uri) is None
    first = storage.create_once(uri, b"1")
    with pytest.raises(storage.PreconditionFailed):
        storage.create_once(uri, b"again")
    second = storage.replace_if(uri, b"2", first)
    assert second != first
    with pytest.raises(storage.PreconditionFailed):  # a writer holding the stale generation loses
        storage.replace_if(uri, b"stale", first)
    assert storage.read_bytes(uri) == b"2" and storage.generation(uri) == second


def test_bucket_registry_versions_aliases_history_and_attachments(root, model_dir, tmp_path):
    models = registry.connect({"kind": "bucket", "root": storage.join(root, "registry")})
    assert isinstance(models, BucketRegistry)
    with pytest.raises(registry.RegistryError, match="not set"):
        models.get("champion")
    v1 = models.register(str(model_dir), {"metrics": {"auc": 0.8}})
    v2 = models.register(str(model_dir), {"metrics": {"auc": 0.9}, "parent_version": v1})
    assert (v1, v2) == ("v0001", "v0002")
    with pytest.raises(registry.RegistryError, match="set by the registry"):
        models.register(str(model_dir), {"version": "v9"})
    with storage.local_copy(models.get(v2)["path"]) as copied:  # the whole SavedModel folder
        assert (copied / "variables" / "variables.index").read_bytes() == b"index"
    assert models.promote(v1, "first") == {"champion": v1, "previous": None}
    assert models.promote(v1, "retried") == {"champion": v1, "previous": None}  # idempotent
    assert models.promote(v2, "better") == {"champion": v2, "previous": v1}
    assert models.rollback(reason="bad") == {"champion": v1, "previous": v2}
    assert [(h["action"], h["from"], h["to"]) for h in models.history()] == [
        ("promote", None, v1), ("promote", v1, v2), ("rollback", v2, v1)]
    assert [(v["version"], v["aliases"]) for v in models.list_versions()] == [(v1, ["champion"]),
                                                                              (v2, ["previous"])]
    models.attach(v2, "blessing", {"decision": "pass"})
    with pytest.raises(registry.RegistryError, match="already exists"):
        models.attach(v2, "blessing", {"decision": "forged"})
    assert models.read_attachment("previous", "blessing") == {"decision": "pass"}
    values = tmp_path / "values.parquet"
    values.write_bytes(b"PAR1")
    models.attach_file(v2, "reference_values.parquet", values)
    assert storage.read_bytes(models.attachment_uri(v2, "reference_values.parquet")) == b"PAR1"
    assert models.get(v2)["attachments"] == ["blessing"]
    with pytest.raises(registry.RegistryError, match="unknown version"):
        models.promote("v0042")


def test_racing_promotions_never_lose_an_alias_move(root, model_dir):
    """Writers that read the same aliases and write without a precondition would drop moves from
    the history or break its chain; with compare-and-swap every recorded move starts where the
    previous one ended and the champion is the last one's target."""
    models = BucketRegistry(storage.join(root, "registry"))
    versions = [models.register(str(model_dir), {}) for _ in range(4)]
    errors = []

    def promote_all(order):
        try:
            for version in order:
                models.promote(version, "race")
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=promote_all, args=(versions[i:] + versions[:i],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    moves = models.history()
    assert moves and all(a["to"] == b["from"] for a, b in zip(moves, moves[1:], strict=False))
    assert moves[0]["from"] is None and models.aliases()["champion"] == moves[-1]["to"]
    doc = json.loads(storage.read_text(storage.join(root, "registry", "aliases.json")))
    assert doc["previous"] == moves[-1]["from"]


def test_racing_registrants_get_distinct_versions(root, model_dir):
    models = BucketRegistry(storage.join(root, "registry"))
    got = []
    threads = [threading.Thread(target=lambda: got.append(models.register(str(model_dir), {})))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == ["v0001", "v0002", "v0003", "v0004"]
    assert len({v["model_uri"] for v in models.list_versions()}) == 4  # no model overwritten


def test_the_bucket_registry_keeps_the_folder_registrys_records(root, model_dir, tmp_path):
    """Same calls, same records: callers hold either backend (`registry.connect`)."""
    import datetime as dt

    folder = registry.FolderRegistry(tmp_path / "folder-registry")
    bucket = BucketRegistry(storage.join(root, "registry"))
    for models in (folder, bucket):
        with pytest.raises(registry.RegistryError, match="nothing to roll back to"):
            models.rollback()
        v1 = models.register(str(model_dir), {"trained_at": dt.date(2026, 11, 15)})  # not JSON: stored as text
        v2 = models.register(str(model_dir), {})
        models.promote(v1, "first")
        models.promote(v2, "second")
        models.rollback(reason="bad")
        with pytest.raises(registry.RegistryError, match="invalid attachment file name"):
            models.attach_file(v1, "values.json", model_dir / "saved_model.pb")
        with pytest.raises(registry.RegistryError, match="no attachment 'blessing'"):
            models.read_attachment(v1, "blessing")
        with pytest.raises(registry.RegistryError, match="no attachment file"):
            models.attachment_uri(v1, "values.parquet")
    strip = ("created_at", "at", "path", "uri", "model_uri")
    for a, b in ((folder.get(v), bucket.get(v)) for v in ("v0001", "v0002")):
        assert {k: v for k, v in a.items() if k not in strip} == {k: v for k, v in b.items() if k not in strip}
    assert [{k: v for k, v in h.items() if k != "at"} for h in folder.history()] == \
        [{k: v for k, v in h.items() if k != "at"} for h in bucket.history()]
    assert set(folder.history()[0]) == set(bucket.history()[0])
    assert bucket.get("v0001")["trained_at"] == "2026-11-15"
    assert bucket.history()[0]["at"][:4] == str(dt.datetime.now(dt.UTC).year)


def test_a_registrant_with_a_stale_listing_takes_the_next_free_number(root, model_dir):
    models = BucketRegistry(storage.join(root, "registry"))
    assert models.register(str(model_dir), {}) == "v0001"
    real = models._version_numbers
    calls = []

    def stale_first():  # the first listing misses v0001: another registrant's write not yet seen
        calls.append(1)
        return [] if len(calls) == 1 else real()

    models._version_numbers = stale_first
    assert models.register(str(model_dir), {}) == "v0002"
    assert [v["version"] for v in models.list_versions()] == ["v0001", "v0002"]
