"""Airflow glue for prodml: shared DAG defaults, assets and thin operators.

Everything here is cheap to import (DAG files parse it); heavy work is delegated to `ml/` inside
`execute` or to a Google provider operator on the gcp profile.
"""
