"""Run bqemulator offline (run with the `.emulators/` venv).

    .emulators/bin/python tests/gcp/bq_emulator.py start --rest-port 9050 --grpc-port 9060 --ephemeral

bqemulator INSTALLs and LOADs DuckDB's `spatial` extension at start-up (a download from
extensions.duckdb.org) and refuses to start without it. Nothing here uses GEOGRAPHY, so the
loader is replaced by a no-op; `ST_*` functions are then unavailable. The best-effort Avro loader
is switched off too (BQEMU_ENABLE_FORMAT_EXTENSIONS=false): loads here are Parquet.
"""

from __future__ import annotations

import os
import sys

from bqemulator.cli import main
from bqemulator.storage.engine import DuckDBEngine


def _no_spatial(self) -> None:
    """Offline: skip `INSTALL spatial` / `LOAD spatial` (GEOGRAPHY is not used)."""


if __name__ == "__main__":
    DuckDBEngine._load_spatial = _no_spatial
    os.environ.setdefault("BQEMU_ENABLE_FORMAT_EXTENSIONS", "false")
    sys.exit(main(sys.argv[1:], prog_name="bqemulator"))
