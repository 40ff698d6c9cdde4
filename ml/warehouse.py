"""The warehouse seam: one small interface, DuckDB (local profile) and BigQuery (gcp profile).

SQL lives in `include/sql/<name>.sql`, written once in **BigQuery dialect**:
- tables are written `{dataset}.table`; only `{dataset}` is templated into the text, so no value
  ever reaches SQL by string formatting;
- values are BigQuery named parameters `@name`, passed as a plain `params` dict.

BigQuery runs the text as is, through the Google provider's `BigQueryHook`. DuckDB gets it
transpiled by sqlglot (`read="bigquery"`, `write="duckdb"`), which also turns `@name` into DuckDB's
`$name`; BigQuery-only storage clauses of `CREATE TABLE` (`PARTITION BY`, `CLUSTER BY`, `OPTIONS`)
are dropped for DuckDB. DuckDB refuses parameters a statement does not use, so each statement only
receives the ones it references.

Tables are declared by the `create_*.sql` files (`ensure_tables`); loads never create tables, on
either side, so both profiles fail the same way on an undeclared table.
"""

from __future__ import annotations

import datetime as dt
import decimal
import io
import re
import time
import uuid
from pathlib import Path

import pyarrow as pa
import sqlglot
from sqlglot import exp

from ml.config import PROJECT_ROOT

SQL_DIR = PROJECT_ROOT / "include" / "sql"
MODES = ("append", "truncate")
# Dataset and table names are templated into SQL text: allow plain identifiers only.
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class WarehouseError(RuntimeError):
    pass


def _check_ident(name: str, what: str) -> str:
    if not _IDENT.match(name or ""):
        raise WarehouseError(f"invalid {what} name {name!r}: use letters, digits and underscores")
    return name


def render(sql: str, dataset: str) -> str:
    """Template `{dataset}` into BigQuery-dialect SQL.

    A plain replace rather than `str.format`: same `{dataset}` syntax, but other braces in the
    SQL (JSON literals, regexes) need no escaping.
    """
    return sql.replace("{dataset}", _check_ident(dataset, "dataset"))


def parameter_names(sql: str) -> set[str]:
    """Names of the `@name` parameters that BigQuery-dialect `sql` (templated or not) references."""
    statements = sqlglot.parse(render(sql, "dataset"), read="bigquery")
    return {p.name for stmt in statements if stmt for p in stmt.find_all(exp.Parameter)}


def sql_files(sql_dir: str | Path = SQL_DIR) -> list[Path]:
    return sorted(Path(sql_dir).glob("*.sql"))


class Warehouse:
    """Base class: reading SQL files and `ensure_tables` are shared; subclasses run SQL."""

    dataset: str
    sql_dir: Path

    def read_sql(self, name: str) -> str:
        """Text of `include/sql/<name>.sql` with `{dataset}` filled in (still BigQuery dialect)."""
        path = self.sql_dir / f"{name.removesuffix('.sql')}.sql"
        if not path.exists():
            known = ", ".join(p.stem for p in sql_files(self.sql_dir))
            raise WarehouseError(f"no SQL file {path} (known: {known})")
        return render(path.read_text(), self.dataset)

    def run_sql_file(self, name: str, params: dict | None = None) -> pa.Table | None:
        """Run `include/sql/<name>.sql`; the rows of its last statement, or None if it returns none."""
        return self.query(self.read_sql(name), params)

    def ensure_tables(self) -> None:
        """Create every table declared by an `include/sql/create_*.sql` file (idempotent)."""
        for path in sorted(self.sql_dir.glob("create_*.sql")):
            self.run_sql_file(path.stem)

    def query(self, sql: str, params: dict | None = None) -> pa.Table | None:
        raise NotImplementedError

    def load_arrow(self, table_name: str, arrow_table: pa.Table, mode: str = "append") -> None:
        raise NotImplementedError

    def replace_partition(self, table_name: str, arrow_table: pa.Table, partition_column: str, value) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _connect_waiting_for_lock(path: str, timeout_s: float):
    import duckdb

    """DuckDB allows one writing process per file. Airflow runs tasks in separate processes, and
    warehouse writes are short, so wait for the lock (with backoff) instead of failing the task."""
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            return duckdb.connect(path)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


# BigQuery-only table storage clauses: PARTITION BY, CLUSTER BY, OPTIONS(...). DuckDB tables have
# no such thing, so the DuckDB rendering drops them (sqlglot would drop them with a warning).
_BIGQUERY_STORAGE = (exp.PartitionedByProperty, exp.ClusterProperty, exp.Property)


def _without_bigquery_storage(stmt: exp.Expression) -> exp.Expression:
    properties = stmt.args.get("properties") if isinstance(stmt, exp.Create) else None
    if properties is None:
        return stmt
    stmt = stmt.copy()
    properties = stmt.args["properties"]
    for prop in list(properties.expressions):
        if type(prop) in _BIGQUERY_STORAGE:
            prop.pop()
    if not properties.expressions:
        properties.pop()
    return stmt


class DuckDBWarehouse(Warehouse):
    """A DuckDB file; the BigQuery dataset becomes a DuckDB schema of the same name."""

    def __init__(self, path: str | Path, dataset: str, sql_dir: str | Path = SQL_DIR,
                 lock_timeout_s: float = 120.0):
        self.path = str(path)
        self.dataset = _check_ident(dataset, "dataset")
        self.sql_dir = Path(sql_dir)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.con = _connect_waiting_for_lock(self.path, lock_timeout_s)
        # BigQuery TIMESTAMP is an absolute UTC instant; sqlglot maps it to TIMESTAMPTZ, so pin the
        # session zone to UTC: results come back tz=UTC and naive datetimes are read as UTC.
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {self.dataset}")

    def query(self, sql: str, params: dict | None = None) -> pa.Table | None:
        """Run BigQuery-dialect `sql` (one or more statements); rows of the last one if it is a query."""
        params = params or {}
        statements = [s for s in sqlglot.parse(sql, read="bigquery") if s is not None]
        missing = {p.name for s in statements for p in s.find_all(exp.Parameter)} - set(params)
        if missing:
            raise WarehouseError(f"missing query parameters: {sorted(missing)}")
        result = None
        for stmt in statements:
            used = {p.name: params[p.name] for p in stmt.find_all(exp.Parameter)}
            duck_sql = _without_bigquery_storage(stmt).sql(dialect="duckdb")
            if isinstance(stmt, exp.Query):
                # con.sql(...).to_arrow_table() avoids the extra copy (and warning) of the
                # DB-API cursor's arrow export in duckdb 2.
                result = self.con.sql(duck_sql, params=used or None).to_arrow_table()
            else:
                self.con.execute(duck_sql, used or None)
                result = None
        return result

    def _table(self, table_name: str) -> str:
        return f"{self.dataset}.{_check_ident(table_name, 'table')}"

    def _write(self, arrow_table: pa.Table, table: str, delete_sql: str | None = None, params=None) -> None:
        """In ONE transaction: optionally delete, then bulk-insert `arrow_table` into `table`.

        The rows come from a registered Arrow view (no per-row inserts); BY NAME matches columns by
        name, not position. The view is registered outside the transaction: unregistering inside
        an aborted one would fail and hide the real error.
        """
        view = f"_arrow_{uuid.uuid4().hex}"
        self.con.register(view, arrow_table)
        try:
            self.con.begin()
            try:
                if delete_sql:
                    self.con.execute(delete_sql, params)
                self.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {view}")
            except BaseException:
                self.con.rollback()
                raise
            self.con.commit()
        finally:
            self.con.unregister(view)

    def load_arrow(self, table_name: str, arrow_table: pa.Table, mode: str = "append") -> None:
        """Append (or, mode="truncate", replace the contents of) an existing table, atomically."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        table = self._table(table_name)
        self._write(arrow_table, table, f"DELETE FROM {table}" if mode == "truncate" else None)

    def replace_partition(self, table_name: str, arrow_table: pa.Table, partition_column: str, value) -> None:
        """Make the rows with `partition_column = value` exactly `arrow_table` (idempotent, atomic)."""
        table = self._table(table_name)
        column = _check_ident(partition_column, "column")
        _check_partition(arrow_table, column, value)
        self._write(arrow_table, table, f"DELETE FROM {table} WHERE {column} = $value", {"value": value})

    def close(self) -> None:
        # DuckDB holds a file lock while open: close promptly so the next task's process can open it.
        self.con.close()


def _check_partition(arrow_table: pa.Table, column: str, value) -> None:
    """Refuse rows outside the partition being replaced: the delete would miss them, so reruns would duplicate them."""
    if column not in arrow_table.column_names:
        raise WarehouseError(f"partition column {column!r} is not in the rows to load")
    outside = [v for v in set(arrow_table.column(column).to_pylist()) if str(v) != str(value)]
    if outside:
        raise WarehouseError(f"rows outside partition {column}={value}: {sorted(map(str, outside))[:5]}")


def query_parameters(params: dict | None):
    """BigQuery `ScalarQueryParameter`/`ArrayQueryParameter`s for a plain params dict (no network)."""
    from google.cloud import bigquery

    def bq_type(value) -> str:
        # bool before int: bool is a subclass of int. Datetimes are instants (naive = UTC),
        # matching the DuckDB side, so they are TIMESTAMP, never DATETIME.
        for python_type, name in ((bool, "BOOL"), (int, "INT64"), (float, "FLOAT64"),
                                  (decimal.Decimal, "NUMERIC"), (dt.datetime, "TIMESTAMP"),
                                  (dt.date, "DATE"), (bytes, "BYTES"), (str, "STRING")):
            if isinstance(value, python_type):
                return name
        if value is None:
            return "STRING"
        raise WarehouseError(f"no BigQuery type for parameter value {value!r}")

    out = []
    for name, value in (params or {}).items():
        if isinstance(value, (list, tuple)):
            element = bq_type(value[0]) if value else "STRING"
            out.append(bigquery.ArrayQueryParameter(name, element, list(value)))
        else:
            if isinstance(value, dt.datetime) and value.tzinfo is None:
                value = value.replace(tzinfo=dt.UTC)
            out.append(bigquery.ScalarQueryParameter(name, bq_type(value), value))
    return out


def _in_table_order(names: list[str], schema, table_id: str) -> list[str]:
    """`names` in the order of the table's `schema`; a name the table lacks is an error."""
    unknown = sorted(set(names) - {f.name for f in schema})
    if unknown:
        raise WarehouseError(f"columns not in {table_id}: {unknown}")
    return [f.name for f in schema if f.name in set(names)]


# google-cloud-bigquery's legacy type names (TableSchema.field_type) -> GoogleSQL names for CAST.
_SQL_TYPES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "RECORD": "STRUCT"}


class BigQueryWarehouse(Warehouse):
    """BigQuery through the Google provider's `BigQueryHook` (an Airflow connection, `gcp_conn_id`).

    SQL files run unchanged (they are BigQuery dialect) as query jobs through `hook.insert_job`;
    loads and reads use the client the hook gives (`hook.get_client`). `ensure_tables` creates the
    dataset (exists_ok) before the tables. `replace_partition` is a load of the rows into a staging
    table plus ONE `MERGE` statement (atomic on its own): see its docstring.
    """

    def __init__(self, project: str | None, dataset: str, location: str | None = None,
                 gcp_conn_id: str = "google_cloud_default", sql_dir: str | Path = SQL_DIR, hook=None):
        self.dataset = _check_ident(dataset, "dataset")
        self.location = location
        self.sql_dir = Path(sql_dir)
        if hook is None:
            # Imported here: ml/ stays importable (and the local profile runs) without the provider.
            from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook

            hook = BigQueryHook(gcp_conn_id=gcp_conn_id, location=location, use_legacy_sql=False)
        self.hook = hook
        # project None: the connection's project (Composer: the environment's project).
        self.project = project or hook.project_id
        self._client = None

    @property
    def client(self):
        """The hook's google-cloud-bigquery client (created on first use)."""
        if self._client is None:
            self._client = self.hook.get_client(project_id=self.project, location=self.location)
        return self._client

    def ensure_tables(self) -> None:
        """Create the dataset if missing, then every `create_*.sql` table (all idempotent)."""
        from google.cloud import bigquery

        dataset = bigquery.Dataset(f"{self.project}.{self.dataset}")
        dataset.location = self.location
        self.client.create_dataset(dataset, exists_ok=True)
        super().ensure_tables()

    def query(self, sql: str, params: dict | None = None) -> pa.Table | None:
        """Run `sql` as one query job (a script if it has several statements); rows, or None for DDL/DML."""
        configuration = {"query": {
            "query": sql,
            "useLegacySql": False,
            "queryParameters": [p.to_api_repr() for p in query_parameters(params)],
        }}
        job = self.hook.insert_job(configuration=configuration, project_id=self.project,
                                   location=self.location)
        rows = job.result()
        if job.statement_type not in (None, "SELECT", "SCRIPT") or not rows.schema:
            return None
        # Small result sets (summaries): the REST pages are enough, no BigQuery Storage read session.
        return rows.to_arrow(create_bqstorage_client=False)

    def _table_id(self, table_name: str) -> str:
        return f"{self.project}.{self.dataset}.{_check_ident(table_name, 'table')}"

    def _load(self, table_id: str, arrow_table: pa.Table, disposition: str, schema=None) -> None:
        """One load job of `arrow_table` as Parquet into an existing table (never creates it).

        Columns are written in the table's order (`schema`, else the table's): BigQuery matches
        Parquet columns by name, but in the same order a positional reader agrees too.
        """
        # Parquet keeps types; naive timestamps are declared UTC so they land in TIMESTAMP
        # columns (a naive Parquet timestamp means DATETIME).
        import pyarrow.parquet as pq
        from google.cloud import bigquery

        if schema is None:
            schema = self.client.get_table(table_id).schema  # NotFound: loads never create tables
        arrow_table = arrow_table.select(_in_table_order(arrow_table.column_names, schema, table_id))
        columns = []
        for field, column in zip(arrow_table.schema, arrow_table.columns, strict=True):
            if pa.types.is_timestamp(field.type) and field.type.tz is None:
                column = column.cast(pa.timestamp(field.type.unit, tz="UTC"))
            columns.append(column)
        buffer = io.BytesIO()
        pq.write_table(pa.table(columns, names=arrow_table.column_names), buffer)
        buffer.seek(0)
        config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET,
                                        write_disposition=disposition, create_disposition="CREATE_NEVER")
        self.client.load_table_from_file(buffer, table_id, job_config=config,
                                         location=self.location).result()

    def load_arrow(self, table_name: str, arrow_table: pa.Table, mode: str = "append") -> None:
        """One Parquet load job: WRITE_APPEND, or (mode="truncate") WRITE_TRUNCATE."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        disposition = "WRITE_APPEND" if mode == "append" else "WRITE_TRUNCATE"
        self._load(self._table_id(table_name), arrow_table, disposition)

    def replace_partition(self, table_name: str, arrow_table: pa.Table, partition_column: str, value) -> None:
        """Make the rows with `partition_column = value` exactly `arrow_table` (idempotent, atomic).

        1. create a staging table `<table>__staging_<random>` with the target's columns (it expires
           after an hour, should step 3 never run), and load the rows into it (Parquet load job);
        2. ONE statement, atomic on its own (no multi-statement transaction needed):
             MERGE target USING staging ON FALSE
             WHEN NOT MATCHED BY SOURCE AND target.<column> = CAST(@partition_value AS <type>) THEN DELETE
             WHEN NOT MATCHED THEN INSERT (<columns>) VALUES (<columns>)
           i.e. delete the partition's old rows and insert the staged ones; the constant filter on
           the partitioning column lets BigQuery prune the other partitions;
        3. drop the staging table.
        """
        from google.cloud import bigquery

        table_id = self._table_id(table_name)
        column = _check_ident(partition_column, "column")
        _check_partition(arrow_table, column, value)
        target = self.client.get_table(table_id)
        fields = {f.name: f for f in target.schema}
        columns = [_check_ident(c, "column") for c in _in_table_order(arrow_table.column_names,
                                                                      target.schema, table_id)]
        staging_id = f"{table_id}__staging_{uuid.uuid4().hex[:12]}"
        staging = bigquery.Table(staging_id, schema=[fields[c] for c in columns])
        staging.expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        staging = self.client.create_table(staging)
        try:
            self._load(staging_id, arrow_table, "WRITE_TRUNCATE", schema=staging.schema)
            sql_type = _SQL_TYPES.get(fields[column].field_type, fields[column].field_type)
            names = ", ".join(f"`{c}`" for c in columns)
            self.query(
                f"MERGE `{table_id}` AS target\n"
                f"USING `{staging_id}` AS staged\n"
                f"ON FALSE\n"
                f"WHEN NOT MATCHED BY SOURCE AND target.`{column}` = CAST(@partition_value AS {sql_type})"
                f" THEN DELETE\n"
                f"WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({names})",
                {"partition_value": value},
            )
        finally:
            self.client.delete_table(staging_id, not_found_ok=True)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def connect(section: dict, sql_dir: str | Path = SQL_DIR) -> Warehouse:
    """A warehouse from the profile's `warehouse:` section (kind: duckdb | bigquery).

    For bigquery: `gcp_conn_id` (default google_cloud_default) names the Airflow connection the
    provider's BigQueryHook uses; `project` may be given, otherwise the connection's project.
    """
    kind = section.get("kind")
    if kind == "duckdb":
        return DuckDBWarehouse(section["path"], section["dataset"], sql_dir=sql_dir)
    if kind == "bigquery":
        return BigQueryWarehouse(section.get("project"), section["dataset"], section.get("location"),
                                 gcp_conn_id=section.get("gcp_conn_id", "google_cloud_default"),
                                 sql_dir=sql_dir)
    raise WarehouseError(f"unknown warehouse kind {kind!r} (expected duckdb or bigquery)")
