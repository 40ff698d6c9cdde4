"""ml.tfrecords: whole-batch tf.train.Example serialization equals protobuf's, row for row, and the
framed files read back through TensorFlow's own TFRecord reader."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from ml import features as F
from ml import tfrecords

SCHEMA = """
name: edge
label: {name: y, values: [0, 1]}
features:
  - {name: code, type: string, kind: categorical, known: ahead, transform: hash, hash_bins: 8}
  - {name: word, type: string, kind: categorical, known: ahead, open_vocabulary: true, transform: lookup}
  - {name: level, type: int, kind: categorical, known: ahead, vocabulary: [1, 2, 3], transform: lookup}
  - {name: big, type: int, kind: categorical, known: ahead, open_vocabulary: true, transform: lookup}
  - {name: count, type: int, kind: numeric, known: ahead, transform: normalize}
  - {name: ratio, type: float, kind: numeric, known: ahead, transform: normalize}
  - {name: note, type: string, kind: key, known: after}
"""


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    path = tmp_path_factory.mktemp("schema") / "edge.yaml"
    path.write_text(SCHEMA)
    return F.load_schema(str(path))


def protobuf_records(table: pa.Table, schema) -> list[bytes]:
    """The reference: one example_pb2.Example per row, built field by field (nulls left out)."""
    from tensorflow.core.example import example_pb2

    out = []
    for row in table.to_pylist():
        example = example_pb2.Example()
        feats = example.features.feature
        for f in schema.model_inputs:
            value = row[f.name]
            if value is None:
                continue
            kind = tfrecords.kind_of(f)
            if kind == "bytes":
                feats[f.name].bytes_list.value.append(value.encode())
            elif kind == "float":
                feats[f.name].float_list.value.append(float(value))
            else:
                feats[f.name].int64_list.value.append(int(value))
        feats[schema.label].int64_list.value.append(int(row[schema.label]))
        out.append(example.SerializeToString(deterministic=True))
    return out


def edge_table(n: int = 300, seed: int = 3) -> pa.Table:
    """Nulls everywhere, negative and 64-bit ints, NaN, empty, unicode and long (>127 byte) strings."""
    rng = np.random.default_rng(seed)
    words = ["", "a", "straße", "x" * 130, "y" * 20000, "naïve ✓"]
    big = [0, 1, 127, 128, 300, 16383, 16384, -1, -(2**63), 2**63 - 1, 2**35]

    def maybe(values, p=0.2):
        return [None if rng.random() < p else v for v in values]

    return pa.table({
        "code": maybe([f"S{int(i):04d}" for i in rng.integers(0, 9999, n)]),
        "word": maybe([words[int(i)] for i in rng.integers(0, len(words), n)]),
        "level": pa.array(maybe([int(i) for i in rng.integers(1, 4, n)], 0.0), pa.int64()),
        "big": pa.array(maybe([big[int(i)] for i in rng.integers(0, len(big), n)]), pa.int64()),
        "count": pa.array(maybe([int(i) for i in rng.integers(-5, 500, n)]), pa.int64()),
        "ratio": pa.array(maybe([float("nan") if i == 0 else float(i) / 7 for i in rng.integers(0, 50, n)]),
                          pa.float64()),
        "note": ["ignored"] * n,
        "y": pa.array([int(i) for i in rng.integers(0, 2, n)], pa.int64()),
    })


def test_records_equal_protobufs_deterministic_serialization(schema):
    table = edge_table()
    assert tfrecords.serialize(table, schema).to_pylist() == protobuf_records(table, schema)


@pytest.mark.parametrize("rows", [0, 1, 2, 7])
def test_tiny_batches_and_a_sliced_table(schema, rows):
    table = edge_table(40).slice(5, rows)  # an Arrow slice: buffers start at an offset
    assert tfrecords.serialize(table, schema).to_pylist() == protobuf_records(table, schema)


def test_all_null_and_all_empty_columns(schema):
    table = edge_table(10)
    table = table.set_column(table.column_names.index("word"), "word", pa.array([""] * 10))
    table = table.set_column(table.column_names.index("ratio"), "ratio", pa.nulls(10, pa.float64()))
    assert tfrecords.serialize(table, schema).to_pylist() == protobuf_records(table, schema)


def test_the_trainer_parses_them_with_the_feature_spec(schema):
    import tensorflow as tf

    table = edge_table(50)
    parsed = tf.io.parse_example(tfrecords.serialize(table, schema).to_pylist(), F.feature_spec(schema))
    level = parsed["level"].numpy().ravel().tolist()
    assert level == table.column("level").to_pylist()
    ratio = parsed["ratio"].numpy().ravel()
    expected = np.array([np.nan if v is None else v for v in table.column("ratio").to_pylist()], np.float32)
    np.testing.assert_array_equal(ratio, expected)  # nulls → the spec's NaN default, NaN stays NaN
    words = [w.decode() for w in parsed["word"].numpy().ravel()]
    assert words == [w or "" for w in table.column("word").to_pylist()]


def test_framed_records_read_back_with_tensorflow(schema, tmp_path):
    import tensorflow as tf

    records = tfrecords.serialize(edge_table(), schema)
    path = tmp_path / "part.tfrecord"
    path.write_bytes(tfrecords.frame(records[:120]) + tfrecords.frame(records[120:]))
    back = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
    assert back == records.to_pylist()
    assert tfrecords.frame(records[:0]) == b""


def test_varints_match_protobuf():
    from google.protobuf.internal import encoder

    values = np.array([0, 1, 127, 128, 255, 16384, 2**31, 2**62, -1, -(2**63), 2**63 - 1], dtype=np.int64)
    expected = []
    for v in values.tolist():
        chunks = []
        encoder._EncodeSignedVarint(chunks.append, v)
        expected.append(b"".join(chunks))
    assert tfrecords.varints(values).to_pylist() == expected
