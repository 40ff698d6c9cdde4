"""The serving-side type conversion of the feature contract (`to_model_inputs`): every input kind
(string, int lookup, normalized number), from every column kind a caller has (lists, NumPy, Arrow
arrays and chunked arrays), with and without nulls. No TensorFlow needed."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from ml import features as F

SCHEMA = """\
name: kinds
label: {name: y}
features:
  - {name: code, type: string, kind: categorical, known: ahead, transform: hash, hash_bins: 8}
  - {name: level, type: int, kind: categorical, known: ahead, vocabulary: [1, 2, 3], transform: lookup}
  - {name: count, type: int, kind: numeric, known: ahead, transform: normalize}
  - {name: ratio, type: float, kind: numeric, known: ahead, transform: normalize}
  - {name: note, type: string, kind: key, known: ahead}
"""


@pytest.fixture
def schema(tmp_path):
    path = tmp_path / "kinds.yaml"
    path.write_text(SCHEMA)
    return F.load_schema(path)


def test_serving_dtypes_follow_type_and_transform(schema):
    # a normalized int is fed as float (the model imputes NaN); an int lookup stays int64
    assert F.serving_input_dtypes(schema) == {"code": object, "level": np.int64, "count": np.float32,
                                              "ratio": np.float32}


@pytest.mark.parametrize("kind", ["list", "numpy", "arrow", "chunked"])
def test_every_column_kind_converts_with_nulls(schema, kind):
    raw = {"code": ["a", None, 7], "level": [1, None, 3], "count": [2, None, 5], "ratio": [0.5, None, -1.25]}
    if kind == "numpy":
        raw = {k: np.array(v, dtype=object) for k, v in raw.items()}
    elif kind == "arrow":
        raw = {"code": pa.array(["a", None, "7"]), "level": pa.array([1, None, 3]),
               "count": pa.array([2, None, 5]), "ratio": pa.array([0.5, None, -1.25])}
    elif kind == "chunked":
        raw = {"code": pa.chunked_array([["a"], [None, "7"]]), "level": pa.chunked_array([[1, None], [3]]),
               "count": pa.chunked_array([[2], [None, 5]]), "ratio": pa.chunked_array([[0.5, None], [-1.25]])}
    out = F.to_model_inputs(schema, raw)
    assert set(out) == {"code", "level", "count", "ratio"}  # not the key column
    assert all(v.shape == (3, 1) for v in out.values())
    assert out["code"].dtype == object and out["code"].ravel().tolist() == ["a", "", "7"]
    assert out["level"].dtype == np.int64 and out["level"].ravel().tolist() == [1, -1, 3]
    assert out["count"].dtype == np.float32
    assert out["count"][0, 0] == 2.0 and np.isnan(out["count"][1, 0]) and out["count"][2, 0] == 5.0
    assert out["ratio"].dtype == np.float32
    assert out["ratio"][0, 0] == 0.5 and np.isnan(out["ratio"][1, 0]) and out["ratio"][2, 0] == -1.25
