"""Features and labels on any engine (DuckDB or Spark) from the one DuckDB definition.

The K-12 features and labels are single SQL queries (:data:`~edsight.features._weekly_k12.K12_SQL`,
:data:`~edsight.features.labels.K12_LABELS_SQL`); an :class:`~edsight.store.engine.Engine` runs them
as written (DuckDB) or transpiled (Spark).

The LMS features are two stages (see :mod:`edsight.features._weekly_lms`): SQL sums events per
(pair, week), then a pure numpy function lays each slice of pairs on a week grid. On Spark the
SQL stage runs transpiled and the numpy stage runs in the executors, one slice of consecutive
pairs per group (``cogroup(...).applyInArrow``), calling the very same
:func:`~edsight.features._weekly_lms.lms_week_features`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from edsight.features import _weekly_lms as lms
from edsight.features._weekly_k12 import K12_SQL
from edsight.features.labels import K12_LABELS_SQL
from edsight.store._transpile import parse_duckdb
from edsight.store.engine import DuckDBEngine, Engine, Relation, SparkEngine

__all__ = ["LMS_SCHEMA", "k12_features", "k12_labels", "lms_features", "lms_features_spark"]

_BUCKET = "_edsight_slice"


def _plain(schema: pa.Schema) -> pa.Schema:
    """``schema`` with dictionary-encoded columns as their plain value type."""
    return pa.schema(
        [pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema]
    )


#: The Arrow schema of ``weekly_features_lms`` results on every engine (ids as plain strings).
LMS_SCHEMA = _plain(lms.SCHEMA)


def k12_features(engine: Engine, *, as_of: date | None = None) -> Relation:
    """The ``weekly_features_k12`` rows (unordered) as a relation of ``engine``."""
    return engine.sql(K12_SQL, {"as_of": as_of})


def k12_labels(engine: Engine) -> Relation:
    """The ``labels_k12`` rows as a relation of ``engine``."""
    return engine.sql(K12_LABELS_SQL)


def lms_features(engine: Engine, *, as_of: date | None = None, pairs_per_slice: int = 20_000) -> pa.Table:
    """The ``weekly_features_lms`` rows, sorted by (person_id, section_id, week), as Arrow.

    ``pairs_per_slice`` (student-section pairs per numpy slice; on Spark, per task) bounds
    the memory of one slice at about ``pairs_per_slice x weeks x 30`` numbers.
    """
    if isinstance(engine, DuckDBEngine):
        rows_per_batch = pairs_per_slice * 20
        with closing(lms.lms_feature_batches(engine.con, as_of=as_of, rows_per_batch=rows_per_batch)) as it:
            return pa.concat_tables([t.cast(LMS_SCHEMA) for t in it] or [LMS_SCHEMA.empty_table()])
    if isinstance(engine, SparkEngine):
        return _lms_spark(engine, as_of, pairs_per_slice)
    raise TypeError(f"no LMS path for engine {type(engine).__name__}")


def _sliced(query: str, step: int) -> str:
    """``query`` without its ``$lo <= pid < $hi`` filter and its order, plus a slice number."""
    tree = parse_duckdb(query)
    if not isinstance(tree, exp.Select) or tree.args.get("where") is None:
        raise TypeError("expected a SELECT with a WHERE on pid")
    pid = next(c for c in tree.args["where"].find_all(exp.Column) if c.name == "pid")
    tree.set("where", None)
    tree.set("order", None)
    bucket = exp.IntDiv(this=pid.copy(), expression=exp.Literal.number(step))
    return tree.select(bucket.as_(_BUCKET)).sql(dialect="duckdb")


@contextmanager
def lms_features_spark(
    engine: SparkEngine, *, as_of: date | None = None, pairs_per_slice: int = 20_000
) -> Iterator[Relation]:
    """The ``weekly_features_lms`` rows as a Spark DataFrame (unordered), valid inside the block.

    Stage 1 is kept in cached temporary views while the block runs and dropped after it, so
    write or collect the frame inside the block.
    """
    from pyspark.sql.pandas.types import from_arrow_schema

    step = int(pairs_per_slice)
    try:
        engine.execute(lms.PREPARE_SQL[0], {"as_of": as_of})
        for statement in lms.PREPARE_SQL[1:]:
            engine.execute(statement)
        counts = engine.to_arrow(
            engine.sql(
                "SELECT coalesce(max(n_weeks), 1) AS max_weeks, "
                "(SELECT count(*) FROM _edsight_lms_sections) AS n_sections FROM _edsight_lms_pairs"
            )
        ).to_pylist()[0]
        due = engine.to_arrow(engine.sql(lms.SECTION_DUE_SQL))
        # every slice needs the whole (small) due-per-section grid: it travels with the function
        sections = lms.LmsSections.from_arrow(
            due, n_sections=int(counts["n_sections"]), max_weeks=int(counts["max_weeks"])
        )
        pairs = engine.sql(_sliced(lms.PAIR_SLICE_SQL, step))
        events = engine.sql(_sliced(lms.EVENT_SLICE_SQL, step))

        def slice_features(left: pa.Table, right: pa.Table) -> pa.Table:
            # runs in the executor, once per slice of consecutive pairs
            p = left.drop_columns([_BUCKET]).sort_by("pid")
            e = right.drop_columns([_BUCKET])
            # plain strings across the JVM boundary (the function may dictionary-encode ids)
            return lms.lms_week_features(p, e, sections).cast(LMS_SCHEMA)

        yield (
            pairs.groupBy(_BUCKET)
            .cogroup(events.groupBy(_BUCKET))
            .applyInArrow(slice_features, from_arrow_schema(LMS_SCHEMA))
        )
    finally:
        for name in dict.fromkeys(lms.TEMP_TABLES):
            engine.drop_table(name)


def _lms_spark(engine: SparkEngine, as_of: date | None, step: int) -> pa.Table:
    with lms_features_spark(engine, as_of=as_of, pairs_per_slice=step) as frame:
        table = engine.to_arrow(frame)
    table = table.cast(LMS_SCHEMA)
    keys = [("person_id", "ascending"), ("section_id", "ascending"), ("week", "ascending")]
    return table.take(pc.sort_indices(table, sort_keys=keys))
