"""Validation's pure parts, rule by rule: the column check, the file-level rules (row count,
presence, open-vocabulary OOV rate) at their boundaries and with their exact messages, the suite
generated from a schema and each compiled check's row mask (NULLs, strict bounds)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from ml import features as F
from ml.validate import _column_problem, _file_level
from ml.validate.engine import Streamed
from ml.validate.suite import (
    Check,
    build_suites,
    compile_suites,
    expected_columns,
    fails,
    nonnull_denominator,
)

SCHEMA = F.Schema(name="t", label="y", row_count=(2, 5), label_values=(0, 1), features=(
    F.Feature("k", "string", "key", "ahead", pattern="^K[0-9]+$"),
    F.Feature("n", "int", "numeric", "ahead", presence=0.5, range=(0, 10)),
    F.Feature("c", "string", "categorical", "ahead", vocabulary=("a", "b"), open_vocabulary=True),
    F.Feature("v", "float", "numeric", "ahead", presence=0.0),
    F.Feature("w", "string", "categorical", "ahead", vocabulary=("x",))))


def test_a_header_with_the_schemas_columns_is_fine_in_any_order():
    assert _column_problem("f.csv", ["y", "w", "v", "c", "n", "k"], SCHEMA) is None


def test_missing_unexpected_and_duplicate_columns_are_named_in_one_rejection():
    problem = _column_problem("f.csv", ["k", "n", "n", "extra", "c", "v", "w"], SCHEMA)
    assert (problem.file, problem.rule, problem.field, problem.row) == ("f.csv", "expected columns", "y", 1)
    assert problem.detail == "expected column missing: y; unexpected column: extra; duplicate column: n"
    assert str(problem) == ("f.csv, row 1: field 'y': expected columns (expected column missing: y; "
                            "unexpected column: extra; duplicate column: n)")
    only_extra = _column_problem("f.csv", ["k", "n", "c", "v", "w", "y", "z1", "z2"], SCHEMA)
    assert (only_extra.field, only_extra.detail) == ("z1", "unexpected column: z1, z2")
    dupes = _column_problem("f.csv", ["k", "n", "c", "v", "w", "y", "y", "k"], SCHEMA)
    assert (dupes.field, dupes.detail) == ("k", "duplicate column: k, y")


CHECKS = [Check("n", "presence", "file", "ExpectColumnValuesToNotBeNull", "raw", {"mostly": 0.5}),
          Check("c", "oov_rate", "file", "ExpectColumnValuesToBeInSet", "typed", {"mostly": 0.8})]


def streamed(counts, nulls=None):
    return Streamed(file_counts=counts, nulls=nulls or {})


def test_row_count_bounds_are_inclusive_and_an_empty_file_is_its_own_reason():
    for n in (2, 5):
        assert _file_level("f.csv", SCHEMA, CHECKS, streamed({}), n)[0] is None
    for n in (1, 6):
        rejected, _ = _file_level("f.csv", SCHEMA, CHECKS, streamed({}), n)
        assert (rejected.rule, rejected.field, rejected.row) == ("row count", None, None)
        assert rejected.detail == f"row count {n} outside [2, 5]"
    empty, stats = _file_level("f.csv", SCHEMA, CHECKS, streamed({}, {"n": 0}), 0)
    assert (empty.rule, empty.row, empty.detail) == ("file has a header but no rows", 1, "")
    assert stats == {"null_fraction": {}, "oov_rate": {}}


def test_presence_at_its_share_passes_and_below_it_rejects_with_the_shares():
    ok, stats = _file_level("f.csv", SCHEMA, CHECKS, streamed({0: (2, 4)}, {"n": 2, "k": 0}), 4)
    assert ok is None
    assert stats == {"null_fraction": {"n": 0.5, "k": 0.0}, "oov_rate": {}}
    rejected, stats = _file_level("f.csv", SCHEMA, CHECKS, streamed({0: (3, 4)}, {"n": 3}), 4)
    assert (rejected.rule, rejected.field) == ("presence", "n")
    assert rejected.detail == "only 25.0% of rows have a value; the schema wants >= 50%"
    assert stats["null_fraction"] == {"n": 0.75}
    assert _file_level("f.csv", SCHEMA, CHECKS, streamed({}, {"n": 1}), 3)[1]["null_fraction"] == {"n": 0.333333}


def test_the_oov_rate_is_recorded_and_judged_on_its_denominator():
    ok, stats = _file_level("f.csv", SCHEMA, CHECKS, streamed({1: (1, 5)}), 5)
    assert ok is None and stats["oov_rate"] == {"c": 0.2}  # exactly the allowed 20 %
    rejected, stats = _file_level("f.csv", SCHEMA, CHECKS, streamed({1: (2, 3)}), 5)
    assert (rejected.rule, rejected.field) == ("oov_rate", "c")
    assert rejected.detail == "out-of-vocabulary rate 66.7% above the limit 20.0%"
    assert stats["oov_rate"] == {"c": 0.666667}  # rounded to 6 places
    nothing, stats = _file_level("f.csv", SCHEMA, CHECKS, streamed({1: (0, 0)}), 5)
    assert nothing is None and stats["oov_rate"] == {"c": 0.0}  # no values: no share to judge


def test_the_first_failing_rule_is_reported_and_every_rate_still_recorded():
    rejected, stats = _file_level("f.csv", SCHEMA, CHECKS, streamed({0: (4, 4), 1: (3, 3)}), 4)
    assert rejected.rule == "presence" and stats["oov_rate"] == {"c": 1.0}


def test_the_suite_generated_from_a_schema():
    raw, typed = build_suites(SCHEMA, {"max_oov_rate": 0.25})
    assert [meta for _, meta in raw] == [
        (None, "columns", "file"), (None, "row_count", "file"),
        ("k", "not_null", "row"), ("k", "pattern", "row"),
        ("n", "presence", "file"), ("n", "type_int", "row"),
        ("c", "not_null", "row"),
        ("v", "type_float", "row"),
        ("w", "not_null", "row"),
        ("y", "not_null", "row"), ("y", "type_int", "row")]
    assert [meta for _, meta in typed] == [("n", "range", "row"), ("c", "oov_rate", "file"),
                                           ("w", "vocabulary", "row"), ("y", "vocabulary", "row")]
    checks = compile_suites(raw, typed)
    assert [c.stage for c in checks] == ["raw"] * 11 + ["typed"] * 4
    by = {(c.field, c.rule): c for c in checks}
    assert by[(None, "columns")].params == {"column_set": ["k", "n", "c", "v", "w", "y"]}
    assert by[(None, "row_count")].params == {"min_value": 2, "max_value": 5}
    assert by[("k", "pattern")].params["regex"] == "^K[0-9]+$"
    assert by[("n", "presence")].params["mostly"] == 0.5
    assert by[("n", "type_int")].params["regex"] == F.INT_RE and by[("v", "type_float")].params["regex"] == F.FLOAT_RE
    assert (by[("n", "range")].params["min_value"], by[("n", "range")].params["max_value"]) == (0.0, 10.0)
    assert by[("c", "oov_rate")].params["value_set"] == ["a", "b"]
    assert by[("c", "oov_rate")].params["mostly"] == pytest.approx(0.75)
    assert by[("w", "vocabulary")].params["value_set"] == ["x"]
    assert by[("y", "vocabulary")].params["value_set"] == [0.0, 1.0]  # numbers compare as floats
    assert {c.kind for c in checks} == {"ExpectTableColumnsToMatchSet", "ExpectTableRowCountToBeBetween",
                                        "ExpectColumnValuesToNotBeNull", "ExpectColumnValuesToMatchRegex",
                                        "ExpectColumnValuesToBeInSet", "ExpectColumnValuesToBeBetween"}
    assert expected_columns(SCHEMA)[-1] == ("y", "int", None)
    nolabel = F.Schema(name="t", label="", features=SCHEMA.features[:1])
    assert [name for name, _, _ in expected_columns(nolabel)] == ["k"]


def test_a_pattern_arrow_cannot_run_is_a_schema_error_naming_the_field():
    schema = F.Schema(name="t", label="", features=(F.Feature("k", "string", "key", "ahead", pattern="^(?=K)"),))
    with pytest.raises(F.SchemaError, match=r"pattern of 'k' is not supported: '\^\(\?=K\)'"):
        compile_suites(*build_suites(schema, {"max_oov_rate": 0.2}))


def check(kind, **params):
    return Check("f", "rule", "row", kind, "raw", params)


def test_each_compiled_check_marks_exactly_the_unexpected_rows():
    text = pa.array(["K1", None, "x", "K22"])
    assert fails(check("ExpectColumnValuesToNotBeNull"), text).tolist() == [False, True, False, False]
    assert fails(check("ExpectColumnValuesToMatchRegex", regex="^K[0-9]+$"), text).tolist() == [
        False, False, True, False]  # NULL is not a pattern failure
    assert fails(check("ExpectColumnValuesToBeInSet", value_set=["K1", "x"]), text).tolist() == [
        False, False, False, True]
    numbers = pa.array([0.0, 5.0, 10.0, None, -1.0, 11.0])
    between = check("ExpectColumnValuesToBeBetween", min_value=0.0, max_value=10.0, strict_min=False, strict_max=False)
    assert fails(between, numbers).tolist() == [False, False, False, False, True, True]
    strict = check("ExpectColumnValuesToBeBetween", min_value=0.0, max_value=10.0, strict_min=True, strict_max=True)
    assert fails(strict, numbers).tolist() == [True, False, True, False, True, True]
    assert fails(check("ExpectColumnValuesToBeInSet", value_set=[1.0]), pa.array([1.0, None, 2.0])).tolist() == [
        False, False, True]
    with pytest.raises(NotImplementedError):
        fails(check("ExpectTableRowCountToBeBetween"), text)
    assert nonnull_denominator(check("ExpectColumnValuesToBeInSet")) is True
    assert nonnull_denominator(check("ExpectColumnValuesToNotBeNull")) is False
