"""ml.transform on FnApiRunner: whole-batch serialization, one file per shard, reruns byte-identical."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
from collections import Counter
from pathlib import Path

import pytest

from ml import features as F
from ml import transform as T

SCHEMA = str(Path(__file__).resolve().parents[2] / "include/schemas/traffic.yaml")


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    from ml.simulate import simulate

    folder = tmp_path_factory.mktemp("sim")
    with contextlib.redirect_stdout(io.StringIO()):
        simulate(folder, dt.date(2026, 11, 1), 2, 5, sensors=40)
    return str(folder / "landing" / "dt=*" / "part-*.csv")


def records(folder: Path, split: str) -> list[bytes]:
    import tensorflow as tf

    files = sorted(str(p) for p in (folder / split).glob("part-*.tfrecord"))
    return [r.numpy() for r in tf.data.TFRecordDataset(files)]


def test_shards_hold_every_clean_row_as_the_per_row_protobuf(landing, tmp_path):
    from tensorflow.core.example import example_pb2

    out = tmp_path / "a"
    summary = T.run(["--input", landing, "--output", str(out), "--schema", SCHEMA, "--num_shards", "3"])
    schema = F.load_schema(SCHEMA)
    tables = [T.clean(T.read_csv(f, schema), schema)[0] for f in summary["input_files"]]
    assert summary["rows_in"] == 2 * 40 * 24
    assert summary["train_rows"] + summary["eval_rows"] == sum(t.num_rows for t in tables)
    for split in ("train", "eval"):
        assert sorted(p.name for p in (out / split).iterdir()) == [f"part-{i:05d}-of-00003.tfrecord" for i in range(3)]
    # The same examples a per-row protobuf build gives (compared canonically: map order sorted).
    expected = Counter()
    for table in tables:
        for row in table.to_pylist():
            example = example_pb2.Example()
            for f in schema.model_inputs:
                if row[f.name] is None:
                    continue
                feature = example.features.feature[f.name]
                if f.type == "string":
                    feature.bytes_list.value.append(row[f.name].encode())
                elif f.transform == "normalize" or f.type == "float":
                    feature.float_list.value.append(float(row[f.name]))
                else:
                    feature.int64_list.value.append(int(row[f.name]))
            example.features.feature[schema.label].int64_list.value.append(int(row[schema.label]))
            expected[example.SerializeToString(deterministic=True)] += 1
    assert Counter(records(out, "train") + records(out, "eval")) == expected
    assert len(records(out, "eval")) == summary["eval_rows"]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["numeric"]["lanes"]["count"] == summary["train_rows"]


def test_a_rerun_writes_the_same_bytes_and_leaves_no_temporary_files(landing, tmp_path):
    for name in ("a", "b"):
        T.run(["--input", landing, "--output", str(tmp_path / name), "--schema", SCHEMA])
    for split in ("train", "eval"):
        a = sorted((tmp_path / "a" / split).iterdir())
        assert [p.name for p in a] == [p.name for p in sorted((tmp_path / "b" / split).iterdir())]
        assert all(p.read_bytes() == (tmp_path / "b" / split / p.name).read_bytes() for p in a)
        assert not [p for p in a if ".tmp-" in p.name]
    assert not (tmp_path / "a" / "_pieces").exists()  # the pieces are concatenated, then removed
    sizes = [p.stat().st_size for p in sorted((tmp_path / "a" / "train").iterdir())]
    assert max(sizes) - min(sizes) < 0.05 * max(sizes)  # rows dealt round-robin: even shards
