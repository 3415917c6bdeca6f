"""``--engine duckdb|spark`` for ``edsight features build``: the Spark path of the build.

DuckDB builds stay what :func:`edsight.features.weekly.store_features` does. With Spark, the
same SQL runs on the Parquet lake (``edsight lake export`` first); each result is written by
the executors as Parquet to a staging folder under ``HOME/tmp`` (removed afterwards) or to
``out`` (kept, hive-partitioned by year and school where the table has them), then streamed
into the warehouse table in one transaction, so the driver never holds a whole table. LMS
labels are computed from the LMS features in the executors, by the same function as on DuckDB.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Literal

import pyarrow as pa

from edsight.config import Settings
from edsight.errors import InvalidInput
from edsight.schema import CANONICAL
from edsight.store.engine import (
    ENGINES,
    EngineName,
    Relation,
    SparkEngine,
    engine_from_settings,
    parquet_dataset,
    partition_types,
)
from edsight.store.warehouse import Warehouse

__all__ = ["ENGINE_HELP", "build_features_with_engine", "resolve_engine"]

log = logging.getLogger(__name__)

ENGINE_HELP = "Query engine: duckdb (default, in-process) or spark (reads the lake; EDSIGHT_SPARK_MASTER)."
Kind = Literal["lms", "k12"]
_BATCH_ROWS = 1 << 20
_LABEL_BUCKETS = 64


def resolve_engine(settings: Settings, engine: str | None) -> EngineName:
    """The engine named on the command line, else the configured one (``EDSIGHT_ENGINE``)."""
    chosen = engine or settings.engine
    for name in ENGINES:
        if chosen == name:
            return name
    raise InvalidInput(f"--engine {chosen}: expected one of {', '.join(ENGINES)}")


def _store(
    spark: SparkEngine, warehouse: Warehouse, table: str, result: Relation, folder: Path, partitioned: bool
) -> int:
    """Write ``result`` as Parquet to ``folder``, then replace the warehouse table with it."""
    from edsight.features.weekly import replace_table

    decl = CANONICAL[table]
    parts = [c for c in ("school_year", "school_id") if partitioned and c in decl.column_index]
    spark.write_parquet(result, folder, partition_by=parts)
    source = parquet_dataset(table, folder)

    def batches() -> Iterator[pa.Table]:
        for batch in source.to_batches(columns=list(decl.column_names), batch_size=_BATCH_ROWS):
            yield pa.Table.from_batches([batch])

    with warehouse.connect() as con:
        return replace_table(con, table, batches())


def _lms_labels(features: Relation, horizon: int) -> Relation:
    """LMS labels in the executors: whole (student, section) histories per group."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    from edsight.features.labels import lms_labels_from_features

    need = ["person_id", "section_id", "week", "current_grade", "page_views"]
    need += ["participations", "assignments_missing"]
    columns = CANONICAL["labels_lms"].column_names
    schema = pa.schema(list(partition_types("labels_lms", columns).items()))

    def labels_of(group: pa.Table) -> pa.Table:
        frame = lms_labels_from_features(group.drop_columns(["_bucket"]).to_pandas(), horizon=horizon)
        return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)

    bucket = F.pmod(F.hash("person_id", "section_id"), F.lit(_LABEL_BUCKETS)).alias("_bucket")
    return (
        features.select(*need, bucket).groupBy("_bucket").applyInArrow(labels_of, from_arrow_schema(schema))
    )


def build_features_with_engine(
    settings: Settings,
    engine: EngineName,
    *,
    kinds: tuple[Kind, ...] = ("lms", "k12"),
    as_of: date | None = None,
    labels: bool = True,
    horizon: int = 4,
    out: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Build features (and labels) on ``engine`` into the warehouse; return rows per table.

    ``engine="duckdb"`` is :func:`~edsight.features.weekly.store_features` then
    :func:`~edsight.features.labels.store_labels`. ``engine="spark"`` computes on Spark
    (``settings.spark_master``, default ``local[*]``) from the lake at ``settings.lake_path``;
    with ``out``, the Parquet results are kept there, hive-partitioned.
    """
    warehouse = Warehouse(settings)
    if engine == "duckdb":
        from edsight.features.labels import store_labels
        from edsight.features.weekly import store_features

        built = store_features(warehouse, kinds=kinds, as_of=as_of)
        if labels:
            built.update(store_labels(warehouse, kinds=kinds, horizon=horizon))
        return built
    from edsight.features.on_engine import k12_features, k12_labels, lms_features_spark

    staging = out or settings.spill_path / "spark-build"
    rows: dict[str, int] = {}
    say = progress or (lambda _msg: None)
    spark = engine_from_settings(settings, engine)
    if not isinstance(spark, SparkEngine):
        raise InvalidInput(f"expected the spark engine, got {spark.name}")
    try:
        keep = out is not None
        if "k12" in kinds:
            say("K-12 features on Spark")
            features = k12_features(spark, as_of=as_of)
            rows["weekly_features_k12"] = _store(
                spark, warehouse, "weekly_features_k12", features, staging / "weekly_features_k12", keep
            )
            if labels:
                say("K-12 labels on Spark")
                rows["labels_k12"] = _store(
                    spark, warehouse, "labels_k12", k12_labels(spark), staging / "labels_k12", keep
                )
        if "lms" in kinds:
            say("LMS features on Spark")
            with lms_features_spark(spark, as_of=as_of) as frame:
                rows["weekly_features_lms"] = _store(
                    spark, warehouse, "weekly_features_lms", frame, staging / "weekly_features_lms", keep
                )
            if labels:
                say("LMS labels on Spark")
                spark.register_parquet("_edsight_lms_built", staging / "weekly_features_lms")
                stored = spark.sql("SELECT * FROM _edsight_lms_built")
                lms_labels = _lms_labels(stored, horizon)
                rows["labels_lms"] = _store(
                    spark, warehouse, "labels_lms", lms_labels, staging / "labels_lms", keep
                )
    finally:
        spark.close()
        if out is None:
            shutil.rmtree(staging, ignore_errors=True)
    log.info("built on spark: %s", rows)
    return rows
