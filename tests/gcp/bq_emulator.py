"""Run bqemulator offline (run with the `.emulators/` venv).

    .emulators/bin/python tests/gcp/bq_emulator.py start --rest-port 9050 --grpc-port 9060 --ephemeral

bqemulator INSTALLs and LOADs DuckDB's `spatial` extension at start-up (a download from
extensions.duckdb.org) and refuses to start without it. Nothing here uses GEOGRAPHY, so the
loader is replaced by a no-op; `ST_*` functions are then unavailable. The best-effort Avro loader
is switched off too (BQEMU_ENABLE_FORMAT_EXTENSIONS=false): loads here are Parquet.

bqemulator also refuses any SQL whose upper-cased text *contains* `ML.PREDICT` (or another
unsupported `ML.*` function), so `prodml.predictions` ("prodML.PREDICTions") is rejected as
BigQuery ML. The check is made a whole-word one here: the functions stay refused, table names pass.

Its Parquet load inserts columns by position (`INSERT INTO t SELECT * FROM read_parquet(?)`);
BigQuery matches a self-describing file's columns to the table's by name, so the load here is
`INSERT INTO t BY NAME ...` (columns missing from the file are NULL, as in BigQuery).

Its named-parameter binding replaces every `@name` in the translated SQL, comments and string
literals included, so a comment that mentions `@target_date` becomes a second placeholder ("excess
parameters"). As in BigQuery, only `@name` in code is a parameter here: comments are dropped and
strings left alone before binding.
"""

from __future__ import annotations

import os
import re
import sys

from bqemulator.cli import main
from bqemulator.jobs import executor
from bqemulator.sql import parameters, translator
from bqemulator.storage.engine import DuckDBEngine


def _no_spatial(self) -> None:
    """Offline: skip `INSTALL spatial` / `LOAD spatial` (GEOGRAPHY is not used)."""


def _whole_word_unsupported_check(translate):
    keywords = sorted(translator._UNSUPPORTED_KEYWORDS)
    pattern = re.compile(r"(?<![\w.`])(" + "|".join(map(re.escape, keywords)) + r")\s*\(", re.IGNORECASE)
    translator._UNSUPPORTED_KEYWORDS = frozenset()

    def checked(self, bq_sql, *args, **kwargs):
        match = pattern.search(bq_sql)
        if match:
            return translator.Err(translator.sql_unsupported(match.group(1).upper()))
        return translate(self, bq_sql, *args, **kwargs)

    return checked


# A string literal or quoted identifier ('...', "...": doubled or backslash-escaped quotes), or a comment.
_STRING_OR_COMMENT = re.compile(r"""(?P<string>'(?:''|\\.|[^'\\])*'|"(?:""|[^"])*")|(?P<comment>--[^\n]*|/\*.*?\*/)""",
                                re.DOTALL)


def _bind_named_in_code_only(bind_named):
    def bind(sql, params):
        strings = []

        def hide(match):
            if match.group("comment"):
                return " "
            strings.append(match.group("string"))
            return f"\x00{len(strings) - 1}\x00"

        bound, values = bind_named(_STRING_OR_COMMENT.sub(hide, sql), params)
        return re.sub(r"\x00(\d+)\x00", lambda m: strings[int(m.group(1))], bound), values

    return bind


def _load_parquet_by_name(path, target_ref, ctx) -> None:
    ctx.engine.execute(f"INSERT INTO {target_ref} BY NAME SELECT * FROM read_parquet(?)", [path])


if __name__ == "__main__":
    executor._LOAD_FORMAT_HANDLERS["PARQUET"] = _load_parquet_by_name
    parameters._bind_named = _bind_named_in_code_only(parameters._bind_named)
    DuckDBEngine._load_spatial = _no_spatial
    translator.SQLTranslator.translate = _whole_word_unsupported_check(translator.SQLTranslator.translate)
    os.environ.setdefault("BQEMU_ENABLE_FORMAT_EXTENSIONS", "false")
    sys.exit(main(sys.argv[1:], prog_name="bqemulator"))
