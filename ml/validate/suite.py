"""The validation suite: Great Expectations expectations generated from the schema, and the same
expectations compiled into vectorised Arrow checks that decide every row.

GX is the suite of record (what the rules are, the report users keep); the compiled checks are the
engine that applies them to every row of files of any size. `ml.validate.gx_report` runs GX itself
on a sample of each file and fails loudly if its counts differ from the engine's.

    raw suite (every value read as a string, trimmed, "" = NULL)
      ExpectTableColumnsToMatchSet    expected columns present, none unexpected      file-level
      ExpectTableRowCountToBeBetween  schema `row_count`                             file-level
      ExpectColumnValuesToNotBeNull   presence 1.0: each NULL row fails              row-level
                                      presence < 1: `mostly` = presence              file-level
      ExpectColumnValuesToMatchRegex  type (int / float syntax) and `pattern`        row-level
    typed suite (numbers parsed by the schema's syntax; a value that is not a number is NULL here,
                 its row already failed the type rule)
      ExpectColumnValuesToBeInSet     closed vocabulary: row-level; open vocabulary:
                                      `mostly` = 1 - max_oov_rate                    file-level
      ExpectColumnValuesToBeBetween   numeric `range` (inclusive)                    row-level
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ml import features as F


@dataclass(frozen=True)
class Check:
    """One expectation, compiled. `stage` says which frame it reads: raw text or typed numbers."""

    field: str | None
    rule: str  # columns | row_count | not_null | presence | type_int | type_float | pattern | vocabulary | ...
    level: str  # file | row
    kind: str  # the GX expectation class name
    stage: str  # raw | typed
    params: dict


def expected_columns(schema: F.Schema) -> list[tuple[str, str, F.Feature | None]]:
    """(name, type, feature or None for the label) of every expected column."""
    out = [(f.name, f.type, f) for f in schema.features]
    if schema.label:
        out.append((schema.label, "int", None))
    return out


def build_suites(schema: F.Schema, limits: dict) -> tuple[list, list]:
    """(raw suite, typed suite): lists of (GX expectation, (field, rule, level)) from the schema."""
    import great_expectations as gx

    gxe = gx.expectations
    raw, typed = [], []
    lo, hi = schema.row_count
    raw.append((gxe.ExpectTableColumnsToMatchSet(column_set=schema.columns, exact_match=True),
                (None, "columns", "file")))
    raw.append((gxe.ExpectTableRowCountToBeBetween(min_value=int(lo), max_value=int(hi)),
                (None, "row_count", "file")))
    for name, type_, feat in expected_columns(schema):
        presence = feat.presence if feat is not None else 1.0
        if presence >= 1.0:
            raw.append((gxe.ExpectColumnValuesToNotBeNull(column=name), (name, "not_null", "row")))
        elif presence > 0:
            raw.append((gxe.ExpectColumnValuesToNotBeNull(column=name, mostly=presence),
                        (name, "presence", "file")))
        if type_ in ("int", "float"):
            raw.append((gxe.ExpectColumnValuesToMatchRegex(column=name, regex=F.INT_RE if type_ == "int" else F.FLOAT_RE),
                        (name, f"type_{type_}", "row")))
        if feat is not None and feat.pattern:
            raw.append((gxe.ExpectColumnValuesToMatchRegex(column=name, regex=feat.pattern),
                        (name, "pattern", "row")))
        values = feat.vocabulary if feat is not None else schema.label_values
        if values:
            values = [v if type_ == "string" else float(v) for v in values]
            if feat is not None and feat.open_vocabulary:
                typed.append((gxe.ExpectColumnValuesToBeInSet(column=name, value_set=values,
                                                              mostly=1.0 - float(limits["max_oov_rate"])),
                              (name, "oov_rate", "file")))
            else:
                typed.append((gxe.ExpectColumnValuesToBeInSet(column=name, value_set=values),
                              (name, "vocabulary", "row")))
        if feat is not None and feat.range is not None:
            typed.append((gxe.ExpectColumnValuesToBeBetween(column=name, min_value=float(feat.range[0]),
                                                            max_value=float(feat.range[1])),
                          (name, "range", "row")))
    return raw, typed


_PARAMS = {
    "ExpectTableColumnsToMatchSet": ("column_set",),
    "ExpectTableRowCountToBeBetween": ("min_value", "max_value"),
    "ExpectColumnValuesToNotBeNull": ("mostly",),
    "ExpectColumnValuesToMatchRegex": ("regex", "mostly"),
    "ExpectColumnValuesToBeInSet": ("value_set", "mostly"),
    "ExpectColumnValuesToBeBetween": ("min_value", "max_value", "strict_min", "strict_max", "mostly"),
}


def compile_suites(raw: list, typed: list) -> list[Check]:
    """The expectations → Checks, in suite order (raw, then typed): the order reasons are listed in.

    An expectation type without a compiled twin is an error here, not a silently skipped rule."""
    checks = []
    for stage, items in (("raw", raw), ("typed", typed)):
        for expectation, (field_, rule, level) in items:
            kind = type(expectation).__name__
            if kind not in _PARAMS:
                raise NotImplementedError(f"no compiled check for {kind}")
            params = {k: getattr(expectation, k) for k in _PARAMS[kind]}
            if kind == "ExpectColumnValuesToMatchRegex":
                try:  # Arrow's regex engine (RE2) has no look-arounds or back-references
                    pc.match_substring_regex(pa.array([""]), params["regex"])
                except pa.ArrowInvalid as exc:
                    raise F.SchemaError(f"pattern of {field_!r} is not supported: {params['regex']!r} ({exc})") from None
            checks.append(Check(field_, rule, level, kind, stage, params))
    return checks


def fails(check: Check, column) -> np.ndarray:
    """Boolean mask of the rows of `column` (trimmed text, or typed numbers, NULLs as nulls) that the
    expectation counts as unexpected. Like GX, only NotNull looks at NULLs; every other rule skips them."""
    kind, p = check.kind, check.params
    if kind == "ExpectColumnValuesToNotBeNull":
        bad = pc.is_null(column)
    elif kind == "ExpectColumnValuesToMatchRegex":
        bad = pc.invert(pc.match_substring_regex(column, p["regex"]))
    elif kind == "ExpectColumnValuesToBeInSet":
        values = pa.array(p["value_set"], type=column.type)
        bad = pc.invert(pc.is_in(column, value_set=values))
    elif kind == "ExpectColumnValuesToBeBetween":
        low = pc.less_equal if p["strict_min"] else pc.less
        high = pc.greater_equal if p["strict_max"] else pc.greater
        bad = pc.or_(low(column, p["min_value"]), high(column, p["max_value"]))
    else:
        raise NotImplementedError(kind)
    if kind != "ExpectColumnValuesToNotBeNull":  # is_in answers False (not NULL) for a NULL input
        bad = pc.and_kleene(bad, pc.is_valid(column))
    return pc.fill_null(bad, False).to_numpy(zero_copy_only=False)


def nonnull_denominator(check: Check) -> bool:
    """Whether GX divides unexpected counts by the non-NULL rows (all but NotNull) or by all rows."""
    return check.kind != "ExpectColumnValuesToNotBeNull"
