"""ml.transform on FnApiRunner: whole-batch serialization, one file per shard, reruns byte-identical."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
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


# ------------------------------------------------------------------ the train/eval split

SPLIT_SCHEMA = """\
name: split_test
label: {{name: y, type: int, values: [0, 1]}}
{split_key}
features:
  - {{name: group, type: string, kind: categorical, known: ahead, open_vocabulary: true, transform: hash, hash_bins: 8}}
  - {{name: x, type: float, kind: numeric, known: ahead, transform: normalize}}
"""


def write_split_data(folder: Path, groups: list, split_key: bool = True, files: int = 2) -> tuple[str, str]:
    """A schema (`group` as split key or none) and `files` CSVs holding one row per entry of
    `groups` (None = an empty group field), dealt round-robin; returns (schema path, CSV glob)."""
    folder.mkdir(parents=True, exist_ok=True)
    schema = folder / "schema.yaml"
    schema.write_text(SPLIT_SCHEMA.format(split_key="split_key: group" if split_key else ""))
    for k in range(files):
        lines = ["group,x,y"] + [f"{g or ''},{(i * 7919) % 1000 / 100:.2f},{i % 2}"
                                  for i, g in enumerate(groups) if i % files == k]
        (folder / f"part-{k}.csv").write_text("\n".join(lines) + "\n")
    return str(schema), str(folder / "part-*.csv")


def rows_by_split(out: Path) -> dict[str, list[tuple]]:
    """The (group, x, y) of every record of each split, parsed with protobuf (group None: missing)."""
    from tensorflow.core.example import example_pb2

    found = {}
    for split in ("train", "eval"):
        found[split] = []
        for record in records(out, split):
            feature = example_pb2.Example.FromString(record).features.feature
            group = feature["group"].bytes_list.value[0].decode() if "group" in feature else None
            found[split].append((group, round(feature["x"].float_list.value[0], 2), feature["y"].int64_list.value[0]))
    return found


def assert_no_group_on_both_sides(found: dict) -> None:
    sides = {}
    for split, rows in found.items():
        for group, _, _ in rows:
            sides.setdefault(group, set()).add(split)
    assert all(len(s) == 1 for s in sides.values()), {g: s for g, s in sides.items() if len(s) > 1}


def test_null_split_keys_are_one_group_of_their_own(tmp_path):
    groups = [None if i % 10 == 0 else f"g{i % 97}" for i in range(3000)]
    schema, csvs = write_split_data(tmp_path / "in", groups)
    summary = T.run(["--input", csvs, "--output", str(tmp_path / "out"), "--schema", schema])
    found = rows_by_split(tmp_path / "out")
    assert sum(map(len, found.values())) == 3000
    assert_no_group_on_both_sides(found)  # every group, the null one included, on one side
    assert any(g is None for g, _, _ in found["train"] + found["eval"])
    assert summary["eval_rows"] == len(found["eval"])
    assert summary["eval_share"] == round(len(found["eval"]) / 3000, 4)
    assert 0.1 <= summary["eval_share"] <= 0.4
    assert summary["split"]["key"] == "group"


def test_without_a_split_key_rows_split_by_their_content_the_same_way_every_run(tmp_path):
    groups = [f"g{i % 5}" for i in range(2000)]
    schema, csvs = write_split_data(tmp_path / "in", groups, split_key=False)
    summary = T.run(["--input", csvs, "--output", str(tmp_path / "a"), "--schema", schema, "--num_shards", "2"])
    T.run(["--input", csvs, "--output", str(tmp_path / "b"), "--schema", schema, "--num_shards", "2"])
    for split in ("train", "eval"):
        for a in sorted((tmp_path / "a" / split).iterdir()):
            assert a.read_bytes() == (tmp_path / "b" / split / a.name).read_bytes()
    assert summary["split"]["by"] == "row hash" and summary["split"]["key"] is None
    assert abs(summary["eval_share"] - 0.2) < 0.03  # rows, not 5 groups: balanced
    # Brute force: each CSV row is on the side its content's bucket says (summary's eval buckets).
    table = F.read_csv_files(sorted(Path(tmp_path / "in").glob("part-*.csv")), F.load_schema(schema))
    buckets = F.table_split_buckets(table, F.load_schema(schema))
    is_eval = np.isin(buckets, summary["split"]["eval_buckets"])
    expected = {"train": Counter(), "eval": Counter()}
    for row, in_eval in zip(table.to_pylist(), is_eval, strict=True):
        expected["eval" if in_eval else "train"][(row["group"], round(row["x"], 2), row["y"])] += 1
    found = rows_by_split(tmp_path / "a")
    assert {split: Counter(rows) for split, rows in found.items()} == expected


def test_a_key_with_a_few_dominant_values_is_balanced_by_rows(tmp_path):
    # 85 % of the rows in three keys, 15 % spread over 150
    groups = ["big1"] * 1200 + ["big2"] * 900 + ["big3"] * 450 + [f"s{i % 150}" for i in range(450)]
    assert F.split_bucket(["big1", "big2"], 0.2).all()  # the plain hash rule: 70 % of the rows in eval
    schema, csvs = write_split_data(tmp_path / "in", groups)
    summary = T.run(["--input", csvs, "--output", str(tmp_path / "out"), "--schema", schema])
    found = rows_by_split(tmp_path / "out")
    assert_no_group_on_both_sides(found)
    assert summary["eval_rows"] == len(found["eval"]) and summary["train_rows"] == len(found["train"])
    assert 0.15 <= summary["eval_share"] <= 0.2  # whole keys fill eval up to the target
    assert {g for g, _, _ in found["eval"]}.isdisjoint({"big1", "big2", "big3"})  # they would overshoot


def test_when_only_big_keys_exist_the_closest_one_makes_the_eval_split(tmp_path):
    schema, csvs = write_split_data(tmp_path / "in", ["a"] * 400 + ["b"] * 350 + ["c"] * 250)
    summary = T.run(["--input", csvs, "--output", str(tmp_path / "out"), "--schema", schema])
    assert summary["eval_share"] == 0.25
    assert {g for g, _, _ in rows_by_split(tmp_path / "out")["eval"]} == {"c"}


def test_a_key_that_cannot_give_the_eval_share_fails_naming_the_key(tmp_path):
    schema, csvs = write_split_data(tmp_path / "in", ["a", "b"] * 500)  # two keys of 50 % each
    with pytest.raises(F.SplitError, match=r"split_key 'group' puts 0\.0% of 1000 rows in eval.*largest hash "
                                           r"bucket holds 50\.0%.*[Cc]hoose a split_key"):
        T.run(["--input", csvs, "--output", str(tmp_path / "out"), "--schema", schema])
    assert not (tmp_path / "out" / "train").exists()  # it fails before any shard is written
    # a looser tolerance lets the same data through: the check is the tolerance, nothing else
    summary = T.run(["--input", csvs, "--output", str(tmp_path / "ok"), "--schema", schema,
                     "--eval_fraction", "0.4", "--eval_share_tolerance", "1.5"])
    assert summary["eval_share"] == 0.5
    unchecked = T.run(["--input", csvs, "--output", str(tmp_path / "inf"), "--schema", schema,
                       "--eval_share_tolerance", "inf"])
    assert unchecked["eval_share"] == 0.0 and unchecked["train_rows"] == 1000
