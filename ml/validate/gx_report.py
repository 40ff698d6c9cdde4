"""Great Expectations, the suite of record, run on a sample of every file: its validation result is
the report users read and keep, and its counts must equal the compiled engine's on the same rows.

GX's pandas engine costs ~30 s and ~3.6 GB for a million rows (and its unexpected-index lists
are capped), so it does not decide rows here: the compiled checks do, on every row. Running GX on
the first `sample_rows` rows of each file keeps its verdicts in the loop: a difference in any
expectation's unexpected count raises `EngineMismatch` and the validation fails, loudly.
"""

from __future__ import annotations

import logging
import os
import warnings

import pyarrow as pa

from ml import features as F

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


class EngineMismatch(RuntimeError):
    """GX and the compiled checks counted different failures on the same rows: a bug, never data."""


class GXSuite:
    """One ephemeral GX context per validate_files call; suites are built once and reused."""

    def __init__(self, schema: F.Schema, raw: list, typed: list):
        logging.getLogger("great_expectations").setLevel(logging.ERROR)
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = self.context.data_sources.add_pandas("prodml_landing")
        self.suites, self.batch_defs, self.index = {}, {}, {}
        position = 0
        for stage, items in (("raw", raw), ("typed", typed)):
            # Table-level rules (column set, row count) are decided on the whole file by the engine;
            # on a sample they would be meaningless, so the sample suite holds the column rules.
            kept = []
            for expectation, (field_, rule, level) in items:
                if type(expectation).__name__.startswith("ExpectColumn"):
                    expectation.meta = {"field": field_, "rule": rule, "level": level, "check": position}
                    kept.append(expectation)
                position += 1
            suite = gx.ExpectationSuite(name=f"{schema.name}_{stage}", expectations=kept)
            self.suites[stage] = self.context.suites.add(suite)
            asset = source.add_dataframe_asset(stage)
            self.batch_defs[stage] = asset.add_batch_definition_whole_dataframe(stage)

    def validate(self, file: str, sample) -> dict:
        """Run both suites on the sample; compare with the engine's counts; return a JSON-able report."""
        import pandas as pd

        rows = len(next(iter(sample.text.values()))) if sample.text else 0

        def series(column):  # strings as objects with None (as GX's pandas rules expect), numbers as float64
            if pa.types.is_string(column.type):
                return pd.Series(column.to_pylist(), dtype=object)
            return pd.Series(column.to_numpy(zero_copy_only=False), dtype="float64")

        frames = {stage: pd.DataFrame({name: series(column) for name, column in columns.items()})
                  for stage, columns in (("raw", sample.text), ("typed", sample.typed))}
        results, disagreements = [], []
        for stage in ("raw", "typed"):
            batch = self.batch_defs[stage].get_batch(batch_parameters={"dataframe": frames[stage]})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. pandas' "pattern has match groups"
                result = batch.validate(self.suites[stage], result_format="SUMMARY")
            for r in result.results:
                meta = r.expectation_config.meta or {}
                if r.exception_info and r.exception_info.get("raised_exception"):
                    raise EngineMismatch(f"{file}: GX failed on {r.expectation_config.type}: "
                                         f"{r.exception_info.get('exception_message')}")
                gx_count = int((r.result or {}).get("unexpected_count") or 0)
                engine_count = int(sample.counts.get(meta["check"], 0))
                if gx_count != engine_count:
                    disagreements.append(f"{meta['field']}/{meta['rule']}: GX {gx_count}, engine {engine_count}")
                results.append({"expectation": r.expectation_config.type, "field": meta["field"],
                                "rule": meta["rule"], "success": bool(r.success), "unexpected_count": gx_count,
                                "partial_unexpected_list": [str(v) for v in
                                                            (r.result or {}).get("partial_unexpected_list") or []][:20]})
        if disagreements:
            raise EngineMismatch(f"{file}: Great Expectations and the compiled checks disagree on the first "
                                 f"{rows} rows: " + "; ".join(disagreements))
        return {"engine": "great_expectations", "sample_rows": rows, "agrees_with_engine": True,
                "results": results}
