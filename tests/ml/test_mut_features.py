"""The feature contract's parsing and CSV reading, value by value: what `make mutate` showed the
broader tests let through (a default, a bound, a message, a BOM, a sign)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pytest

from ml import features as F

GOOD = "{name: x, type: int, kind: numeric, known: ahead}"


def schema_file(tmp_path, body: str, name: str = "s.yaml"):
    path = tmp_path / name
    path.write_text(body)
    return path


def feature(tmp_path, line: str, name: str = "f.yaml") -> F.Feature:
    return F.load_schema(schema_file(tmp_path, f"features:\n  - {line}\n", name)).features[0]


def refused(tmp_path, body: str, name: str = "bad.yaml") -> str:
    path = schema_file(tmp_path, body, name)
    with pytest.raises(F.SchemaError) as info:
        F.load_schema(path)
    return str(info.value).removeprefix(f"{path}: ")


def test_a_feature_with_only_the_required_fields_gets_every_default(tmp_path):
    assert feature(tmp_path, GOOD) == F.Feature(
        name="x", type="int", kind="numeric", known="ahead", presence=1.0, vocabulary=None,
        open_vocabulary=False, range=None, pattern=None, transform="none", hash_bins=0)


def test_every_optional_field_is_read(tmp_path):
    f = feature(tmp_path, "{name: c, type: string, kind: categorical, known: ahead, presence: 0.5, "
                          "vocabulary: [a, b], open_vocabulary: true, pattern: '^[ab]$', transform: hash, "
                          "hash_bins: 2}")
    assert (f.presence, f.vocabulary, f.open_vocabulary, f.pattern, f.transform, f.hash_bins) == (
        0.5, ("a", "b"), True, "^[ab]$", "hash", 2)
    g = feature(tmp_path, "{name: n, type: float, kind: numeric, known: event, range: [0, 9]}", "g.yaml")
    assert (g.type, g.known, g.range) == ("float", "event", (0, 9))
    h = feature(tmp_path, "{name: s, type: string, kind: key, known: after}", "h.yaml")
    assert (h.type, h.known, h.transform) == ("string", "after", "none")
    for transform in ("lookup", "normalize"):
        assert feature(tmp_path, f"{{name: v, type: int, kind: numeric, known: ahead, transform: {transform}}}",
                       f"{transform}.yaml").transform == transform


def test_each_missing_required_field_is_named_in_order(tmp_path):
    assert refused(tmp_path, "features:\n  - {name: x, type: int}\n") == "features[0]: missing kind, known"
    assert refused(tmp_path, "features:\n  - {kind: numeric}\n", "b.yaml") == "features[0]: missing known, name, type"
    assert refused(tmp_path, f"features:\n  - {GOOD}\n  - {{name: y, type: int, kind: numeric}}\n",
                   "c.yaml") == "features[1]: missing known"


def test_type_known_transform_and_hash_bins_errors_say_what_is_allowed(tmp_path):
    assert refused(tmp_path, "features:\n  - {name: x, type: bool, kind: numeric, known: ahead}\n") == (
        "features[0]: type must be string, int or float, not 'bool'")
    assert refused(tmp_path, "features:\n  - {name: x, type: int, kind: numeric, known: later}\n", "b.yaml") == (
        "features[0]: known must be one of ('ahead', 'event', 'after'), not 'later'")
    assert refused(tmp_path, "features:\n  - {name: x, type: int, kind: numeric, known: ahead, transform: log}\n",
                   "c.yaml") == (
        "features[0]: transform must be one of ('lookup', 'hash', 'normalize', 'none'), not 'log'")
    assert refused(tmp_path, "features:\n  - {name: x, type: int, kind: numeric, known: event, transform: lookup}\n",
                   "d.yaml") == (
        "features[0]: feature 'x' is known only 'event' the event, so it cannot be a model input "
        "(set transform: none)")
    for bins, name in (("", "e.yaml"), (", hash_bins: 1", "f.yaml")):
        assert refused(tmp_path, "features:\n  - {name: x, type: string, kind: categorical, known: ahead, "
                                 f"transform: hash{bins}}}\n", name) == (
            "features[0]: transform hash needs hash_bins >= 2")


def test_schema_level_fields_and_their_defaults(tmp_path):
    path = schema_file(tmp_path, f"features:\n  - {GOOD}\n", "plain.yaml")
    text = path.read_text()
    s = F.load_schema(path)
    assert (s.name, s.label, s.label_values, s.keys, s.split_key, s.partition_column, s.slices, s.row_count) == (
        "plain", "", (0, 1), (), None, None, (), (1, 10**12))
    assert s.path == str(path) and s.digest == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert s.by_name == {"x": s.features[0]} and s.columns == ["x"]
    full = F.load_schema(schema_file(tmp_path, (
        "name: shop\nlabel: {name: y, values: [1, 2]}\nkeys: [d, k]\nsplit_key: k\npartition_column: d\n"
        "slices: [k]\nrow_count: [5, 9]\nfeatures:\n"
        "  - {name: d, type: string, kind: key, known: ahead}\n"
        "  - {name: k, type: string, kind: key, known: ahead}\n"), "full.yaml"))
    assert (full.name, full.label, full.label_values, full.keys, full.split_key, full.partition_column,
            full.slices, full.row_count) == ("shop", "y", (1, 2), ("d", "k"), "k", "d", ("k",), (5, 9))
    assert full.columns == ["d", "k", "y"] and full.entity_keys == ("k",)


def test_duplicate_feature_names_are_refused(tmp_path):
    assert refused(tmp_path, f"features:\n  - {GOOD}\n  - {GOOD}\n") == "duplicate feature names"


@pytest.mark.parametrize("extra, message", [
    ("keys: [nope]", "keys names 'nope', which is not a feature of the schema (features: x, k)"),
    ("slices: [nope]", "slices names 'nope', which is not a feature of the schema (features: x, k)"),
    ("keys: k", "keys must be a list of feature names, not 'k'"),
    ("slices: k", "slices must be a list of feature names, not 'k'"),
    ("split_key: nope", "split_key is 'nope', which is not a feature of the schema (features: x, k)"),
    ("partition_column: nope", "partition_column is 'nope', which is not a feature of the schema (features: x, k)"),
    ("partition_column: x\nkeys: [k]", "partition_column 'x' must also be one of the keys"),
    ("partition_column: x", "partition_column 'x' must also be one of the keys"),
    ("label: {name: 'bad-label'}", "column name 'bad-label' must be letters, digits and underscores (it becomes "
                                   "a warehouse column): rename it in the schema and the data"),
])
def test_every_column_the_schema_names_is_one_of_its_features(tmp_path, extra, message):
    body = f"{extra}\nfeatures:\n  - {GOOD}\n  - {{name: k, type: string, kind: key, known: ahead}}\n"
    assert refused(tmp_path, body) == message


def test_columns_the_schema_names_that_are_features_are_accepted(tmp_path):
    s = F.load_schema(schema_file(tmp_path, (
        "keys: [k, x]\nslices: [k]\nsplit_key: x\npartition_column: x\nlabel: {name: y_1}\n"
        f"features:\n  - {GOOD}\n  - {{name: k, type: string, kind: key, known: ahead}}\n")))
    assert (s.keys, s.slices, s.split_key, s.partition_column, s.label) == (("k", "x"), ("k",), "x", "x", "y_1")
    # `keys: []` and no label are fine too (a schema may have neither)
    assert F.load_schema(schema_file(tmp_path, f"keys: []\nfeatures:\n  - {GOOD}\n", "b.yaml")).keys == ()


def test_a_feature_name_that_is_not_an_identifier_is_refused(tmp_path):
    assert refused(tmp_path, "features:\n  - {name: 'a b', type: int, kind: numeric, known: ahead}\n").startswith(
        "column name 'a b' must be letters")
    assert refused(tmp_path, "features:\n  - {name: 1a, type: int, kind: numeric, known: ahead}\n",
                   "b.yaml").startswith("column name '1a' must be")


def test_entity_key_is_compact_json_in_key_order():
    assert F.entity_key(("S1", 7)) == '["S1",7]'
    assert F.entity_key(["a"]) == '["a"]'
    assert json.loads(F.entity_key(("x", 1.5, None))) == ["x", 1.5, None]
    import datetime as dt

    assert F.entity_key((dt.date(2024, 1, 2), 3)) == '["2024-01-02",3]'  # other types as str


def test_arrow_types_follow_the_schema_and_the_label_is_int(tmp_path):
    s = F.load_schema(schema_file(tmp_path, (
        "label: {name: y}\nfeatures:\n  - {name: a, type: string, kind: key, known: ahead}\n"
        "  - {name: b, type: int, kind: numeric, known: ahead}\n"
        "  - {name: c, type: float, kind: numeric, known: ahead}\n")))
    assert F.arrow_types(s) == {"a": pa.string(), "b": pa.int64(), "c": pa.float64(), "y": pa.int64()}
    nolabel = F.load_schema(schema_file(tmp_path, "features:\n  - {name: a, type: float, kind: numeric, known: ahead}\n",
                                        "n.yaml"))
    assert F.arrow_types(nolabel) == {"a": pa.float64()}


def test_read_header_strips_a_bom_and_spaces_from_a_file_and_from_bytes(tmp_path):
    path = tmp_path / "h.csv"
    path.write_bytes("\ufeff a ,b,\"c,d\"\n1,2,3\n".encode())
    assert F.read_header(path) == ["a", "b", "c,d"]
    assert F.read_header(path, path.read_bytes()) == ["a", "b", "c,d"]
    assert F.read_header("x", b" only , header") == ["only", "header"]  # no newline at all
    assert F.read_header("x", b"a,b\r\n1,2\n") == ["a", "b"]
    assert F.read_header("x", b"") == []
    latin1 = tmp_path / "latin1.csv"  # a header that is not UTF-8 is read, not a crash: validation names it
    latin1.write_bytes(b"caf\xe9,b\n1,2\n")
    assert F.read_header(latin1) == F.read_header("x", latin1.read_bytes()) == ["caf\ufffd", "b"]
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert F.read_header(empty) == []


def test_parse_numbers_takes_the_schema_syntax_and_nulls_the_rest():
    column = pa.array([" 5 ", "+7", "-3", "1.5", "abc", "", None, "1_000", ".5", "2e3", "nan", "1e"])
    ints = F.parse_numbers(column, "int").to_pylist()
    assert ints == [5, 7, -3, None, None, None, None, None, None, None, None, None]
    assert F.parse_numbers(column, "int").type == pa.int64()
    floats = F.parse_numbers(column, "float").to_pylist()
    assert floats == [5.0, 7.0, -3.0, 1.5, None, None, None, None, 0.5, 2000.0, None, None]
    assert F.parse_numbers(column, "float").type == pa.float64()
    # a precomputed mask is trusted: it saves the regex
    mask = pa.array([True, False, False, False, False, False, False, False, False, False, False, False])
    assert F.parse_numbers(column, "float", ok=mask).to_pylist() == [5.0] + [None] * 11


@pytest.fixture
def tiny(tmp_path):
    return F.load_schema(schema_file(tmp_path, (
        "label: {name: y}\nfeatures:\n  - {name: k, type: string, kind: key, known: ahead}\n"
        "  - {name: n, type: int, kind: numeric, known: ahead}\n"
        "  - {name: v, type: float, kind: numeric, known: ahead}\n"), "tiny.yaml"))


def test_read_csv_files_types_columns_and_concatenates_files(tmp_path, tiny):
    a = tmp_path / "a.csv"
    a.write_text("\ufeffk,n,v,y\nA,1,0.5,1\n,,,\n")
    b = tmp_path / "b.csv"
    b.write_text("k,n,v\nB,2,1.5\n")  # a file without the label: the column is absent there
    table = F.read_csv_files([a, b], tiny)
    assert table.schema.field("n").type == pa.int64() and table.schema.field("v").type == pa.float64()
    assert table.schema.field("k").type == pa.string() and table.schema.field("y").type == pa.int64()
    assert table.to_pylist() == [{"k": "A", "n": 1, "v": 0.5, "y": 1}, {"k": None, "n": None, "v": None, "y": None},
                                 {"k": "B", "n": 2, "v": 1.5, "y": None}]
    assert F.read_csv_files([b], tiny).column_names == ["k", "n", "v"]
    words = tmp_path / "words.csv"
    words.write_text("k,n\nNA,1\nnull,2\nN/A,3\n")  # only an empty field is missing: these are values
    assert F.read_csv_files([words], tiny)["k"].to_pylist() == ["NA", "null", "N/A"]
    assert F.read_csv_files([words], tiny, bad_values="null")["k"].to_pylist() == ["NA", "null", "N/A"]


def test_read_csv_files_bad_values_raise_naming_the_file_or_become_nulls(tmp_path, tiny):
    bad = tmp_path / "bad.csv"
    bad.write_text("k,n,v,y\nA,x,0.5,1\nB,+4,oops,0\n")
    with pytest.raises(ValueError, match=rf"^{bad}: .*n"):
        F.read_csv_files([bad], tiny)
    table = F.read_csv_files([bad], tiny, bad_values="null")
    assert table.to_pylist() == [{"k": "A", "n": None, "v": 0.5, "y": 1}, {"k": "B", "n": 4, "v": None, "y": 0}]
    assert [table.schema.field(c).type for c in ("k", "n", "v", "y")] == [pa.string(), pa.int64(), pa.float64(),
                                                                          pa.int64()]
    with pytest.raises(ValueError, match="bad_values must be 'raise' or 'null', not 'drop'"):
        F.read_csv_files([bad], tiny, bad_values="drop")


def test_read_csv_files_uses_the_callers_opener(tmp_path, tiny):
    opened = []

    def open_file(name):
        opened.append(name)
        return open(tmp_path / name, "rb")

    (tmp_path / "o.csv").write_text("k,n\nA,3\n")
    assert F.read_csv_files(["o.csv"], tiny, open_file=open_file).to_pylist() == [{"k": "A", "n": 3}]
    assert opened == ["o.csv"]


def test_split_buckets_hash_each_key_as_text_into_1000_buckets():
    import zlib

    keys = ["a", "b", "S0001", None]
    expected = [zlib.crc32(k.encode()) % 1000 for k in keys[:3]] + [zlib.crc32(b"\xff") % 1000]
    assert F.split_buckets(keys).tolist() == expected
    assert F.split_buckets([7, 12]).tolist() == [zlib.crc32(b"7") % 1000, zlib.crc32(b"12") % 1000]
    assert F.split_buckets(pa.array(["a", "b"])).dtype == np.int64
    assert F.split_buckets([]).tolist() == []
    # the plain split: bucket < round(fraction * 1000)
    keys = [f"k{i}" for i in range(2000)]
    buckets = F.split_buckets(keys)
    assert (F.split_bucket(keys, 0.25) == (buckets < 250)).all()
    assert (F.split_bucket(keys, 0.0004) == (buckets < 0)).all() and (F.split_bucket(keys, 0.0006) == (buckets < 1)).all()
