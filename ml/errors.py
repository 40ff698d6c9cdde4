"""Errors a retry cannot fix, and how an entry point reports one.

A schema, configuration or data-contract error is deterministic: the same inputs give the same
error, so retrying it only delays the message (two retries with backoff cost ~100 s). Such errors
derive from `PermanentError`. The Airflow layer (`prodml_airflow.failures`) turns them into a
failure without retries; a `python -m ml.<module>` entry point exits with `EXIT_PERMANENT` so the
operator that started it can tell too. Everything else (a network blip, a lock, a preempted
worker) keeps the retries of `prodml_airflow.defaults`.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable

EXIT_PERMANENT = 78  # sysexits.h EX_CONFIG: "something was found in an unconfigured or misconfigured state"
EXIT_USAGE = 2  # argparse's exit status for bad command-line arguments: also deterministic


class PermanentError(Exception):
    """Base of every error that the same inputs would raise again (mixed into ValueError subclasses)."""


def is_permanent(exc: BaseException | None) -> bool:
    """True when `exc`, or an exception it was raised from or during, is a PermanentError (Beam and
    thread pools re-raise a worker's error wrapped in their own)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, PermanentError):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def run_main(run: Callable[[], object]) -> None:
    """The `if __name__ == "__main__"` body of an entry point: log, run, print the JSON result;
    a permanent error prints its message (no traceback: the message names what to change) and
    exits with EXIT_PERMANENT; any other error propagates (exit 1, retried)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = run()
    except Exception as exc:
        if not is_permanent(exc):
            raise
        print(f"error (permanent, not retried): {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        sys.exit(EXIT_PERMANENT)
    print(json.dumps(result, indent=1, default=str))
