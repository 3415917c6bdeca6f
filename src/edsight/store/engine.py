"""One query interface over two engines: DuckDB (default, in-process) and Apache Spark.

Every query is written once, in DuckDB SQL. :class:`DuckDBEngine` runs it as is;
:class:`SparkEngine` transpiles it with SQLGlot (:mod:`edsight.store._transpile`) and runs it on
a SparkSession (``local[*]`` by default, or a cluster's master URL). Both read the same
Parquet lake (flat ``<table>.parquet`` files or hive-partitioned ``<table>/`` folders) and
both hand results back as Arrow, so callers see the same columns and dtypes from either.

Choose the engine with ``EDSIGHT_ENGINE=duckdb|spark`` (and ``EDSIGHT_SPARK_MASTER``) or
:func:`engine_from_settings`'s ``engine`` argument. See ``docs/scaling.md``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from edsight.config import Settings
from edsight.errors import InvalidInput, WarehouseError
from edsight.schema import CANONICAL
from edsight.sql import quote_ident
from edsight.store._transpile import ERR_MISSING_PARAM, parameter_names, parse_duckdb, spark_tree
from edsight.store.compare import result_differences
from edsight.store.warehouse import Warehouse

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkFrame
    from pyspark.sql import SparkSession

__all__ = [
    "ENGINES",
    "DuckDBEngine",
    "Engine",
    "EngineName",
    "Relation",
    "SparkEngine",
    "engine_from_settings",
    "lake_tables",
    "parquet_dataset",
    "partition_types",
    "result_differences",
]

log = logging.getLogger(__name__)

EngineName = Literal["duckdb", "spark"]
ENGINES: tuple[EngineName, ...] = ("duckdb", "spark")
# A query result: a duckdb.DuckDBPyRelation or a pyspark.sql.DataFrame, per engine.
Relation = Any

ERR_ENGINE = "unknown engine {0!r}; expected one of {1}"
ERR_NO_LAKE = (
    "no Parquet lake at {0}: run `edsight lake export` first (Spark reads the lake, not the DuckDB file)"
)
ERR_NO_TABLE = "{0}: no Parquet file or folder for a table here"
ERR_NO_PYSPARK = "the Spark engine needs pyspark: pip install 'edsight[spark]'"
ERR_NO_JAVA = "the Spark engine needs Java 17+ (JAVA_HOME or `java` on PATH)"
ERR_STATEMENT = "only SELECT queries and CREATE [TEMP] TABLE ... AS SELECT run on every engine; got {0}"

_ARROW_TYPES: Mapping[str, pa.DataType] = {
    "string": pa.string(),
    "json": pa.string(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
}


def partition_types(table: str, columns: Sequence[str]) -> dict[str, pa.DataType]:
    """Arrow types of hive partition columns: declared ones for canonical tables, else strings.

    Partition values live in folder names; inferring their types would turn a school id such
    as ``0012`` into the number 12, so edsight never infers them.
    """
    decl = CANONICAL.get(table)
    out: dict[str, pa.DataType] = {}
    for col in columns:
        column = decl.column_index.get(col) if decl is not None else None
        out[col] = _ARROW_TYPES[column.dtype] if column is not None else pa.string()
    return out


def _hive_columns(folder: Path) -> list[str]:
    """Partition column names of a hive-style folder (``a=1/b=x/part.parquet``), outermost first."""
    names: list[str] = []
    level = folder
    while True:
        subdirs = [p for p in sorted(level.iterdir()) if p.is_dir() and "=" in p.name]
        if not subdirs:
            return names
        names.append(subdirs[0].name.split("=", 1)[0])
        level = subdirs[0]


def lake_tables(directory: Path) -> dict[str, Path]:
    """Table name -> Parquet file or hive-partitioned folder, for every table in a lake folder."""
    if not directory.is_dir():
        raise WarehouseError(ERR_NO_LAKE.format(directory))
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith((".", "_")):
            continue
        if path.is_file() and path.suffix == ".parquet":
            found[path.stem] = path
        elif path.is_dir() and any(path.rglob("*.parquet")):
            found[path.name] = path
    return found


def parquet_dataset(name: str, path: Path) -> ds.Dataset:
    """A pyarrow dataset of a file or a hive folder, partition columns typed by declaration."""
    if not path.exists():
        raise InvalidInput(ERR_NO_TABLE.format(path))
    if path.is_file():
        return ds.dataset(path, format="parquet")
    cols = _hive_columns(path)
    types = partition_types(name, cols)
    part = ds.partitioning(pa.schema([(c, types[c]) for c in cols]), flavor="hive") if cols else None
    return ds.dataset(path, format="parquet", partitioning=part, exclude_invalid_files=True)


def _write_dataset(batches: pa.RecordBatchReader, path: Path, partition_by: Sequence[str]) -> None:
    """Write Parquet atomically: into a sibling folder, then renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.parent / f".{path.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    if partition_by:
        ds.write_dataset(
            batches,
            partial,
            format="parquet",
            partitioning=list(partition_by),
            partitioning_flavor="hive",
            basename_template="part-{i}.parquet",
            max_partitions=1 << 16,
            existing_data_behavior="overwrite_or_ignore",
            preserve_order=True,
        )
    else:
        import pyarrow.parquet as pq

        partial.mkdir()
        with pq.ParquetWriter(partial / "part-0.parquet", batches.schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
    if path.is_dir():
        old = path.parent / f".{path.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(partial, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if path.exists():
            path.unlink()
        os.replace(partial, path)


class Engine(ABC):
    """What every engine offers: register tables, run DuckDB-dialect SQL, hand back Arrow."""

    name: ClassVar[EngineName]

    @abstractmethod
    def register_parquet(self, name: str, path: Path) -> None:
        """Make a Parquet file or hive-partitioned folder queryable as ``name``."""

    @abstractmethod
    def register_frame(self, name: str, frame: pd.DataFrame | pa.Table) -> None:
        """Make an in-memory table queryable as ``name``."""

    @abstractmethod
    def sql(self, query: str, params: Mapping[str, object] | None = None) -> Relation:
        """A lazy result of one DuckDB-dialect ``SELECT`` with ``$name`` parameters bound."""

    @abstractmethod
    def create_table(self, name: str, query: str, params: Mapping[str, object] | None = None) -> None:
        """Compute ``query`` once and keep it as the temporary table ``name``."""

    @abstractmethod
    def register_result(self, name: str, result: Relation) -> None:
        """Make a result of this engine queryable as ``name`` (a view: computed when read)."""

    @abstractmethod
    def drop_table(self, name: str) -> None:
        """Forget a temporary table made by :meth:`create_table` or a registration."""

    @abstractmethod
    def to_arrow(self, result: Relation) -> pa.Table:
        """The whole result as an Arrow table (the common currency of both engines)."""

    @abstractmethod
    def columns(self, result: Relation) -> list[str]:
        """Column names of a result, without computing it."""

    @abstractmethod
    def write_parquet(self, result: Relation, path: Path, partition_by: Sequence[str] = ()) -> None:
        """Write a result as Parquet, hive-partitioned by ``partition_by`` when given."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection or session (only what this engine opened itself)."""

    # -- shared behaviour ----------------------------------------------------------------------
    def execute(self, statement: str, params: Mapping[str, object] | None = None) -> Relation | None:
        """Run a ``SELECT`` (returned) or a ``CREATE [OR REPLACE] [TEMP] TABLE t AS SELECT``."""
        tree = parse_duckdb(statement)
        from sqlglot import exp

        if isinstance(tree, exp.Create) and str(tree.args.get("kind", "")).upper() == "TABLE":
            target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
            select = tree.expression
            if select is None:
                raise InvalidInput(ERR_STATEMENT.format("CREATE TABLE without AS SELECT"))
            self.create_table(str(target.name), select.sql(dialect="duckdb"), params)
            return None
        if isinstance(tree, exp.Query):
            return self.sql(statement, params)
        raise InvalidInput(ERR_STATEMENT.format(type(tree).__name__))

    def to_pandas(self, result: Relation) -> pd.DataFrame:
        """The result as pandas, converted from Arrow the same way on every engine."""
        return self.to_arrow(result).to_pandas(date_as_object=True)

    def register_lake(self, directory: Path, tables: Sequence[str] | None = None) -> list[str]:
        """Register every table of a Parquet lake (or only ``tables``); return the names."""
        found = lake_tables(directory)
        wanted = list(found) if tables is None else [t for t in tables if t in found]
        for name in wanted:
            self.register_parquet(name, found[name])
        log.info("%s engine: registered %d lake tables from %s", self.name, len(wanted), directory)
        return wanted

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class DuckDBEngine(Engine):
    """DuckDB in-process: on an open connection (e.g. the warehouse's) or a fresh in-memory one."""

    name: ClassVar[EngineName] = "duckdb"

    def __init__(
        self,
        connection: duckdb.DuckDBPyConnection | None = None,
        *,
        threads: int | None = None,
        memory_limit: str | None = None,
    ) -> None:
        self._stack = ExitStack()
        if connection is None:
            config: dict[str, Any] = {"preserve_insertion_order": False}
            if threads:
                config["threads"] = threads
            if memory_limit:
                config["memory_limit"] = memory_limit
            connection = duckdb.connect(config=config)
            self._stack.callback(connection.close)
        self.con = connection
        self._registered: set[str] = set()
        self._views: set[str] = set()

    @classmethod
    def for_warehouse(cls, warehouse: Warehouse) -> DuckDBEngine:
        """An engine on a read-only connection to the warehouse (closed with the engine)."""
        stack = ExitStack()
        con = stack.enter_context(warehouse.connect(read_only=True))
        engine = cls(con)
        engine._stack.push(stack)
        return engine

    def register_parquet(self, name: str, path: Path) -> None:
        # A pyarrow dataset, not read_parquet(): it also works on warehouse connections, which
        # forbid SQL file access, and types hive partition columns the same way as Spark does.
        dataset = parquet_dataset(name, Path(path))
        self.drop_table(name)
        decl = CANONICAL.get(name)
        order = list(decl.column_names) if decl is not None else []
        if not order or set(order) != set(dataset.schema.names) or order == dataset.schema.names:
            self.con.register(name, dataset)
            self._registered.add(name)
            return
        # hive partition columns come last from the dataset: a view restores the declared order
        source = f"_edsight_src_{name}"
        self.con.register(source, dataset)
        self._registered.add(source)
        cols = ", ".join(quote_ident(c) for c in order)
        self.con.execute(
            f"CREATE OR REPLACE TEMP VIEW {quote_ident(name)} AS SELECT {cols} FROM {quote_ident(source)}"
        )
        self._views.add(name)

    def register_frame(self, name: str, frame: pd.DataFrame | pa.Table) -> None:
        self.drop_table(name)
        self.con.register(name, frame)
        self._registered.add(name)

    def sql(self, query: str, params: Mapping[str, object] | None = None) -> duckdb.DuckDBPyRelation:
        used = _used_params(query, params)
        return self.con.sql(query, params=used) if used else self.con.sql(query)

    def create_table(self, name: str, query: str, params: Mapping[str, object] | None = None) -> None:
        used = _used_params(query, params)
        statement = f"CREATE OR REPLACE TEMP TABLE {quote_ident(name)} AS {query}"
        self.con.execute(statement, used) if used else self.con.execute(statement)

    def register_result(self, name: str, result: duckdb.DuckDBPyRelation) -> None:
        self.drop_table(name)
        self.con.register(name, result)
        self._registered.add(name)

    def drop_table(self, name: str) -> None:
        if name in self._views:
            self.con.execute(f"DROP VIEW IF EXISTS {quote_ident(name)}")
            self._views.discard(name)
            name = f"_edsight_src_{name}"
        if name in self._registered:
            self.con.unregister(name)
            self._registered.discard(name)
        else:
            self.con.execute(f"DROP TABLE IF EXISTS {quote_ident(name)}")

    def to_arrow(self, result: duckdb.DuckDBPyRelation) -> pa.Table:
        return result.to_arrow_table()

    def columns(self, result: duckdb.DuckDBPyRelation) -> list[str]:
        return list(result.columns)

    def write_parquet(
        self, result: duckdb.DuckDBPyRelation, path: Path, partition_by: Sequence[str] = ()
    ) -> None:
        _write_dataset(result.to_arrow_reader(1 << 20), Path(path), partition_by)

    def close(self) -> None:
        for name in list(self._views):
            self.drop_table(name)
        for name in list(self._registered):
            try:
                self.con.unregister(name)
            except duckdb.Error:
                log.debug("could not unregister %s", name)
        self._registered.clear()
        self._stack.close()


def _used_params(query: str, params: Mapping[str, object] | None) -> dict[str, object]:
    """The subset of ``params`` that ``query`` names (DuckDB rejects unused ones).

    Raises:
        InvalidInput: when the query names a parameter that ``params`` lacks.
    """
    names = parameter_names(parse_duckdb(query))
    given = dict(params or {})
    missing = sorted(names - set(given))
    if missing:
        raise InvalidInput(ERR_MISSING_PARAM.format(missing, sorted(given)))
    return {k: v for k, v in given.items() if k in names}


def _java_available() -> bool:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return True
    return shutil.which("java") is not None


class SparkEngine(Engine):
    """Apache Spark through PySpark; the same SQL, transpiled, on ``master`` (``local[*]``).

    ``shuffle_partitions`` sets ``spark.sql.shuffle.partitions`` (Spark's default 200 is far
    too many for a laptop; on a cluster use about 2-3 per executor core). The session runs
    in UTC with ANSI SQL on (overflow and bad casts raise, as in DuckDB) and hive partition
    types never inferred. An existing ``session`` (given, or already active in this process) is
    used and left open on :meth:`close`.
    """

    name: ClassVar[EngineName] = "spark"

    def __init__(
        self,
        master: str | None = None,
        *,
        session: SparkSession | None = None,
        shuffle_partitions: int | None = None,
        driver_memory: str | None = None,
        config: Mapping[str, str] | None = None,
        app_name: str = "edsight",
    ) -> None:
        self._owns_session = False
        if session is None:
            # a session already running in this process (getOrCreate returns it) is not ours to stop
            self._owns_session = _active_session() is None
            session = self.start_session(
                master,
                shuffle_partitions=shuffle_partitions,
                driver_memory=driver_memory,
                config=config,
                app_name=app_name,
            )
        self.spark = session
        self._views: set[str] = set()
        self._cached: dict[str, SparkFrame] = {}

    @staticmethod
    def start_session(
        master: str | None = None,
        *,
        shuffle_partitions: int | None = None,
        driver_memory: str | None = None,
        config: Mapping[str, str] | None = None,
        app_name: str = "edsight",
    ) -> SparkSession:
        """A SparkSession configured so that results match DuckDB's (see the class docstring)."""
        try:
            from pyspark.sql import SparkSession
        except ImportError as exc:
            raise WarehouseError(ERR_NO_PYSPARK) from exc
        target = master or "local[*]"
        if target.startswith("local") and not _java_available():
            raise WarehouseError(ERR_NO_JAVA)
        cores = os.cpu_count() or 2
        settings: dict[str, str] = {
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.ansi.enabled": "true",
            "spark.sql.shuffle.partitions": str(shuffle_partitions or max(2, 2 * cores)),
            "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
            "spark.sql.parquet.inferTimestampNTZ.enabled": "true",
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            "spark.sql.execution.pythonUDF.arrow.enabled": "true",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
            "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
        }
        if target.startswith("local"):
            # Local Python workers must run this interpreter to import the same edsight; PySpark
            # reads the worker interpreter from PYSPARK_PYTHON (default: python3 on PATH).
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        if driver_memory:
            settings["spark.driver.memory"] = driver_memory
        settings.update(config or {})
        builder = SparkSession.builder.master(target).appName(app_name)
        for key, value in settings.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
        log.info("spark session on %s (spark %s)", target, session.version)
        return session

    def _frame(self, name: str, path: Path) -> SparkFrame:
        path = Path(path)
        if not path.exists():
            raise InvalidInput(ERR_NO_TABLE.format(path))
        reader = self.spark.read
        if path.is_dir():
            reader = reader.option("basePath", str(path))
        frame = reader.parquet(str(path))
        cols = _hive_columns(path) if path.is_dir() else []
        if cols:
            from pyspark.sql import functions as F

            types = partition_types(name, cols)
            casts = {c: F.col(c).cast(_spark_type(types[c])) for c in cols}
            frame = frame.withColumns(casts)
            decl = CANONICAL.get(name)
            # declared column order, as in the flat file, so SELECT * agrees across layouts
            if decl is not None and set(decl.column_names) == set(frame.columns):
                frame = frame.select(*decl.column_names)
        return frame

    def register_parquet(self, name: str, path: Path) -> None:
        self._frame(name, path).createOrReplaceTempView(name)
        self._views.add(name)

    def register_frame(self, name: str, frame: pd.DataFrame | pa.Table) -> None:
        table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
        self.spark.createDataFrame(table).createOrReplaceTempView(name)
        self._views.add(name)

    def translate(self, query: str, params: Mapping[str, object] | None = None) -> str:
        """The Spark SQL that :meth:`sql` runs for a DuckDB query."""
        return spark_tree(parse_duckdb(query), params).sql(dialect="spark")

    def sql(self, query: str, params: Mapping[str, object] | None = None) -> SparkFrame:
        text = self.translate(query, params)
        log.debug("spark sql: %s", text)
        return self.spark.sql(text)

    def create_table(self, name: str, query: str, params: Mapping[str, object] | None = None) -> None:
        from pyspark import StorageLevel

        self.drop_table(name)
        tree = parse_duckdb(query)
        if tree.args.get("order") is not None:
            tree.set("order", None)  # a table has no order; sorting it on Spark is a global shuffle
            query = tree.sql(dialect="duckdb")
        frame = self.sql(query, params).persist(StorageLevel.MEMORY_AND_DISK)
        frame.count()  # materialise now: later readers see one computed copy
        frame.createOrReplaceTempView(name)
        self._views.add(name)
        self._cached[name] = frame

    def register_result(self, name: str, result: SparkFrame) -> None:
        result.createOrReplaceTempView(name)
        self._views.add(name)

    def drop_table(self, name: str) -> None:
        cached = self._cached.pop(name, None)
        if cached is not None:
            cached.unpersist()
        if name in self._views:
            self.spark.catalog.dropTempView(name)
            self._views.discard(name)

    def to_arrow(self, result: SparkFrame) -> pa.Table:
        table = result.toArrow()
        # Spark hands timestamps back zone-aware (UTC); DuckDB's TIMESTAMP is naive
        fields = []
        for f in table.schema:
            if pa.types.is_timestamp(f.type) and f.type.tz is not None:
                fields.append(pa.field(f.name, pa.timestamp("us"), f.nullable))
            else:
                fields.append(f)
        schema = pa.schema(fields)
        return table if schema == table.schema else table.cast(schema)

    def columns(self, result: SparkFrame) -> list[str]:
        return list(result.columns)

    def write_parquet(self, result: SparkFrame, path: Path, partition_by: Sequence[str] = ()) -> None:
        writer = result.write.mode("overwrite")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        writer.parquet(str(path))

    def close(self) -> None:
        for name in list(self._views):
            self.drop_table(name)
        if self._owns_session:
            self.spark.stop()


def _active_session() -> SparkSession | None:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return None
    return SparkSession.getActiveSession()


def _spark_type(arrow: pa.DataType) -> str:
    names = {
        pa.string(): "string",
        pa.int8(): "tinyint",
        pa.int16(): "smallint",
        pa.int32(): "int",
        pa.int64(): "bigint",
        pa.float64(): "double",
        pa.bool_(): "boolean",
        pa.date32(): "date",
        pa.timestamp("us"): "timestamp_ntz",
    }
    return names.get(arrow, "string")


def engine_from_settings(
    settings: Settings, engine: EngineName | None = None, *, register: bool = True
) -> Engine:
    """The configured engine, with the canonical tables queryable.

    DuckDB (default) opens the warehouse read-only. Spark starts a session on
    ``settings.spark_master`` (``local[*]`` when unset) and, with ``register``, registers every
    table of the Parquet lake at ``settings.lake_path``.

    Raises:
        InvalidInput: on an unknown engine name.
        WarehouseError: when the warehouse or lake is missing, or Spark cannot start.
    """
    chosen = engine or settings.engine
    if chosen == "duckdb":
        return DuckDBEngine.for_warehouse(Warehouse(settings))
    if chosen == "spark":
        if register and not settings.lake_path.is_dir():
            raise WarehouseError(ERR_NO_LAKE.format(settings.lake_path))
        spark = SparkEngine(settings.spark_master)
        if register:
            spark.register_lake(settings.lake_path)
        return spark
    raise InvalidInput(ERR_ENGINE.format(chosen, ", ".join(ENGINES)))
