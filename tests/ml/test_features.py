"""The feature contract, and the proof that training and serving run the same transform."""

import json
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from ml import features as F


def test_schema_builds_model_inputs_from_known_ahead_features_only(schema):
    inputs = {f.name for f in schema.model_inputs}
    assert {"sensor_id", "hour", "road_type", "forecast_temp_c", "scheduled_event"} <= inputs
    assert all(f.known == "ahead" for f in schema.model_inputs)
    for observed in ("vehicle_count", "avg_speed_kmh", "occupancy", "incident_reports", "congested"):
        assert observed not in inputs
    assert schema.columns[-1] == schema.label == "congested"
    assert schema.split_key == "sensor_id"


def test_a_feature_known_only_after_the_event_cannot_be_a_model_input(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\nlabel: {name: y}\nfeatures:\n"
        "  - {name: incidents, type: int, kind: numeric, known: after, transform: normalize}\n")
    with pytest.raises(F.SchemaError, match="incidents.*known only 'after'.*cannot be a model input"):
        F.load_schema(path)


def test_schema_errors_name_the_feature(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nlabel: {name: y}\nfeatures:\n  - {name: x, type: decimal, kind: numeric, known: ahead}\n")
    with pytest.raises(F.SchemaError, match=r"features\[0\]: type must be"):
        F.load_schema(path)


def test_split_is_deterministic_and_by_group():
    keys = np.array([f"S{i:04d}" for i in range(500)] * 3)
    a = F.split_bucket(keys, 0.2)
    assert np.array_equal(a, F.split_bucket(keys, 0.2))
    # every row of one sensor is on the same side
    for key in np.unique(keys)[:50]:
        assert len(set(a[keys == key])) == 1
    assert 0.1 < a.mean() < 0.3


def test_a_missing_key_is_a_value_of_its_own():
    keys = ["a", None, "b", None, "7", None]
    buckets = F.split_buckets(keys)
    assert buckets[1] == buckets[3] == buckets[5]
    assert buckets[0] == F.split_buckets(["a"])[0] and buckets[4] == F.split_buckets(pa.array([7]))[0]
    assert buckets[0] == zlib.crc32(b"a") % F.SPLIT_BUCKETS  # the hash the split always used
    # the same buckets from a list, an Arrow column with chunks and a NumPy array
    chunked = pa.chunked_array([pa.array(["a", None, "b"]), pa.array([None, "7", None])])
    assert np.array_equal(F.split_buckets(chunked), buckets)
    assert np.array_equal(F.split_buckets(np.array(["a", "b"])), buckets[[0, 2]])
    assert F.split_bucket(keys, 1.0).all() and not F.split_bucket(keys, 0.0).any()


def test_without_a_split_key_rows_are_hashed_by_their_content_in_schema_order(schema):
    no_key = F.Schema(name="t", features=schema.features[:3], label="y")
    table = pa.table({"sensor_id": ["S0001", "S0001", "S0001", None], "date": ["d", "d", "d", "d"],
                      "hour": [1, 1, 2, 1], "y": [0, 0, 0, 0]})
    content = F.row_contents(table, no_key).to_pylist()
    assert content[0] == content[1] and len(set(content)) == 3  # a null is not the empty row part
    buckets = F.table_split_buckets(table, no_key)
    assert buckets[0] == buckets[1]
    # column order in the file does not matter: the schema's order is hashed
    shuffled = table.select(["hour", "y", "date", "sensor_id"])
    assert np.array_equal(F.table_split_buckets(shuffled, no_key), buckets)


def test_eval_buckets_fill_the_eval_share_with_whole_buckets():
    uniform = [10] * 1000
    chosen = F.choose_eval_buckets(uniform, 0.2)
    assert chosen == list(range(200))  # many even keys: the plain hash split
    skewed = [0] * 1000
    skewed[3], skewed[5], skewed[600] = 5000, 3000, 1000  # three keys hold 90 % of the rows
    for b in range(100, 300):
        skewed[b] = 5
    chosen = F.choose_eval_buckets(skewed, 0.2)
    assert 3 not in chosen and 5 not in chosen
    share = F.check_eval_share(skewed, chosen, 0.2, 2.0, "k")
    assert 0.15 < share <= 0.2 and share == sum(skewed[b] for b in chosen) / sum(skewed)
    assert F.choose_eval_buckets([0, 30, 0, 70], 0.2) == [1]  # no bucket fits: the closest one
    assert F.choose_eval_buckets([0] * 10, 0.2) == []


def test_an_eval_share_far_from_the_fraction_is_a_split_error_naming_the_key():
    counts = [500, 500]
    with pytest.raises(F.SplitError, match=r"split_key 'site' puts 0\.0% of 1000 rows in eval.*50\.0%"):
        F.check_eval_share(counts, [], 0.2, 2.0, "site")
    with pytest.raises(F.SplitError, match=r"the row hash \(no split_key\) puts 50\.0%"):
        F.check_eval_share(counts, [1], 0.2, 2.0, None)
    assert F.check_eval_share(counts, [1], 0.2, 2.5, "site") == 0.5  # the tolerance is the only limit
    assert F.check_eval_share([0, 0], [], 0.2, 2.0, "site") == 0.0  # no rows: nothing to judge
    assert issubclass(F.SplitError, F.SchemaError)  # a contract error: retrying cannot fix it


def test_to_model_inputs_types_and_missing_values(schema):
    n = 3
    columns = {f.name: [None] * n for f in schema.model_inputs}
    out = F.to_model_inputs(schema, columns)
    assert out["forecast_temp_c"].dtype == np.float32 and np.isnan(out["forecast_temp_c"]).all()
    assert out["sensor_id"].shape == (n, 1) and out["sensor_id"][0, 0] == ""


def test_training_path_and_serving_path_give_equal_predictions(static_training_run, schema):
    """Rows that went through Beam → TFRecord → tf.data parsing, and the same rows read raw from
    the landed CSV and fed to the exported SavedModel, score identically: no training/serving skew."""
    from ml.evaluate import read_eval_examples
    from ml.predict import load_model, score_columns
    from ml.storage import to_path

    run_dir = to_path(static_training_run["run_dir"])
    model = load_model(str(run_dir / "candidate" / "model"))
    tf_columns, _ = read_eval_examples(str(run_dir / "transform" / "eval" / "part-*.tfrecord"), schema)
    training_path = score_columns(model, tf_columns)

    # The same rows, raw from the CSVs the transform read: the eval side of the same split.
    inputs = json.loads((run_dir / "transform" / "summary.json").read_text())["input_files"]
    options = pacsv.ConvertOptions(column_types=F.arrow_types(schema), null_values=[""])
    table = pa.concat_tables([pacsv.read_csv(p, convert_options=options) for p in inputs])
    split = json.loads((run_dir / "transform" / "summary.json").read_text())["split"]
    is_eval = np.isin(F.table_split_buckets(table, schema), split["eval_buckets"])
    raw = table.filter(pa.array(is_eval))
    serving_path = score_columns(model, F.to_model_inputs(schema, {c: raw.column(c) for c in raw.column_names}))

    # Beam shards rows in no particular order: compare the sorted score vectors row for row.
    assert len(training_path) == raw.num_rows > 0
    np.testing.assert_allclose(np.sort(training_path), np.sort(serving_path), rtol=1e-5, atol=1e-6)
    assert np.std(serving_path) > 0.01  # a real model, not a constant
