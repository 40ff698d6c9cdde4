"""Fail fast: an error a retry cannot fix fails its task at once, with its message.

`prodml_airflow.defaults` gives every task two retries with backoff, which is right for a
network blip and wrong for a schema or configuration error (same inputs, same error, ~100 s
later). `ml.errors.PermanentError` marks the second kind; here it becomes Airflow's
AirflowFailException, the one exception the task runner never retries.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager

from ml.errors import EXIT_PERMANENT, EXIT_USAGE, is_permanent

PERMANENT_EXIT_CODES = (EXIT_PERMANENT, EXIT_USAGE)


@contextmanager
def permanent_errors_fail_the_task():
    """Re-raise a PermanentError (or one that wraps it) as AirflowFailException; others pass through."""
    try:
        yield
    except Exception as exc:
        if not is_permanent(exc):
            raise
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"{type(exc).__name__}: {exc} (not retried: the same inputs fail again; "
                                   "fix the schema, profile or data it names)") from exc


def fail_fast_callable(function):
    """`function`, with permanent errors failing the task without retries."""
    if getattr(function, "_prodml_fail_fast", False):
        return function

    @functools.wraps(function)  # keeps the signature: Airflow injects context arguments by name
    def wrapper(*args, **kwargs):
        with permanent_errors_fail_the_task():
            return function(*args, **kwargs)

    wrapper._prodml_fail_fast = True
    return wrapper


def fail_fast(dag):
    """Apply fail-fast to every Python-callable task of `dag` (@task, @task.short_circuit, ...);
    prodml's own operators apply it in `execute`. Returns `dag`, so a DAG file ends with
    `fail_fast(my_dag())`."""
    for task in dag.tasks:
        if callable(getattr(task, "python_callable", None)):
            task.python_callable = fail_fast_callable(task.python_callable)
    return dag
