"""Score a saved risk model over a feature table on either engine (DuckDB or Spark).

On Spark the scoring runs inside the executors, partition by partition
(``DataFrame.mapInArrow``): each task loads the model from its registry files (text and JSON,
never a pickle) and scores Arrow record batches. On DuckDB the same batch function runs in
process over the result's record batches. Both engines hand the *same* Arrow batches to the
*same* function, so the probabilities are identical, not merely close.

``mapInArrow`` rather than ``mapInPandas``: both reach pandas, but converting from Arrow inside
the shared function makes the dtypes the model sees (nullable integers, booleans, dates) the
same on both engines by construction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from edsight.errors import InvalidInput
from edsight.models._risk_model import RiskModel
from edsight.models.registry import load_model
from edsight.store.engine import DuckDBEngine, Engine, Relation, SparkEngine

__all__ = ["score_batch", "score_distributed"]

log = logging.getLogger(__name__)

ERR_COLUMNS = "the feature table lacks column(s) {0} that model {1!r} needs"
_BATCH_ROWS = 65_536


def score_batch(
    model: RiskModel, batch: pa.RecordBatch, keep: Sequence[str], target: str, model_id: str
) -> pa.RecordBatch:
    """``keep`` columns of ``batch`` plus ``target``, ``model_id`` and the calibrated ``probability``."""
    frame = batch.select(model.feature_names_in_).to_pandas(date_as_object=True)
    proba = model.predict_proba(frame)[:, 1].astype(np.float64) if batch.num_rows else np.empty(0)
    n = batch.num_rows
    arrays = [batch.column(c) for c in keep]
    arrays += [pa.array([target] * n, pa.string()), pa.array([model_id] * n, pa.string()), pa.array(proba)]
    return pa.RecordBatch.from_arrays(arrays, names=[*keep, "target", "model_id", "probability"])


def _output_schema(input_schema: pa.Schema, keep: Sequence[str]) -> pa.Schema:
    return pa.schema(
        [input_schema.field(c) for c in keep]
        + [
            pa.field("target", pa.string()),
            pa.field("model_id", pa.string()),
            pa.field("probability", pa.float64()),
        ]
    )


def score_distributed(
    engine: Engine,
    features: Relation,
    *,
    model: str,
    home: Path | str,
    keep: Sequence[str],
    version: str | int | None = None,
    target: str | None = None,
) -> Relation:
    """Calibrated probabilities of saved model ``model`` for every row of ``features``.

    Returns a relation of the same engine with the ``keep`` columns (keys and anything to
    carry along, e.g. ``school_id``), ``target`` (default: the model name), ``model_id``
    (``name:version``) and ``probability``. On Spark, ``home`` must be readable by every
    executor (shared storage), as the lake is.

    Raises:
        InvalidInput: when the model is missing or altered, or ``features`` lacks its inputs.
    """
    fitted, record = load_model(model, home=home, version=version)
    columns = engine.columns(features)
    missing = [c for c in [*fitted.feature_names_in_, *keep] if c not in columns]
    if missing:
        raise InvalidInput(ERR_COLUMNS.format(missing, model))
    label = target or record.name
    model_id = f"{record.name}:{record.version}"
    keep_cols = list(keep)
    if isinstance(engine, SparkEngine):
        where = (str(home), record.name, record.version)
        return _score_spark(engine, features, where, keep_cols, label, model_id)
    if isinstance(engine, DuckDBEngine):
        reader = features.to_arrow_reader(_BATCH_ROWS)
        schema = _output_schema(reader.schema, keep_cols)
        batches = [score_batch(fitted, b, keep_cols, label, model_id) for b in reader]
        table = pa.Table.from_batches(batches, schema=schema)
        log.info("scored %d rows with %s on duckdb", table.num_rows, model_id)
        return engine.con.from_arrow(table)
    raise InvalidInput(f"no scoring path for engine {type(engine).__name__}")


def _score_spark(
    engine: SparkEngine,
    features: Relation,
    where: tuple[str, str, str],
    keep: list[str],
    target: str,
    model_id: str,
) -> Relation:
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    home, name, version = where
    in_schema = to_arrow_schema(features.schema)
    out_schema = from_arrow_schema(_output_schema(in_schema, keep))

    def score_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        # runs in the executor: the model is read from its registry files once per task
        fitted, _ = load_model(name, home=home, version=version)
        for batch in batches:
            yield score_batch(fitted, batch, keep, target, model_id)

    return features.mapInArrow(score_partition, out_schema)
