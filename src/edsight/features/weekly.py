"""Leak-free point-in-time weekly features (LMS and K-12), built on DuckDB (SQL) and numpy.

Each row describes one student (and, for LMS data, one section) at the *end* of one week and
is computed only from records timestamped before that end: a feature row of week ``w`` never
changes when anything at or after the end of week ``w`` is added, changed or removed. See
``docs/features.md`` for every column's definition.

Public functions take either a :class:`~edsight.store.warehouse.Warehouse` or an open DuckDB
connection to a database holding the canonical tables. ``build_*`` return DataFrames (fine up
to a few million rows); :func:`store_features` writes the declared tables in bounded slices
(LMS) or inside DuckDB (K-12), which is what the CLI and large districts use.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from datetime import date
from typing import Literal

import duckdb
import pandas as pd
import pyarrow as pa

from edsight.errors import InvalidInput
from edsight.features._weekly_k12 import K12_SQL
from edsight.features._weekly_lms import SCHEMA as LMS_SCHEMA
from edsight.features._weekly_lms import lms_feature_batches
from edsight.schema import CANONICAL
from edsight.sql import quote_ident, scalar
from edsight.store.warehouse import Warehouse

__all__ = [
    "FEATURE_TABLES",
    "Source",
    "build_k12_features",
    "build_lms_features",
    "connection",
    "replace_table",
    "store_features",
]

logger = logging.getLogger(__name__)

Source = Warehouse | duckdb.DuckDBPyConnection
FeatureKind = Literal["lms", "k12"]

FEATURE_TABLES: dict[str, str] = {"lms": "weekly_features_lms", "k12": "weekly_features_k12"}


@contextmanager
def connection(source: Source, *, read_only: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
    """An open connection for ``source``: borrowed as is, or opened (and closed) on a warehouse."""
    if isinstance(source, duckdb.DuckDBPyConnection):
        yield source
    elif isinstance(source, Warehouse):
        with source.connect(read_only=read_only) as con:
            yield con
    else:
        raise InvalidInput(f"expected a Warehouse or a DuckDB connection, got {type(source).__name__}")


def _check_as_of(as_of: date | None) -> None:
    if as_of is not None and not isinstance(as_of, date):
        raise InvalidInput(f"as_of must be a date, got {type(as_of).__name__}")


def build_lms_features(
    source: Source, *, as_of: date | None = None, latest_only: bool = False
) -> pd.DataFrame:
    """Weekly LMS features per (student, section, week of the term), sorted by that key.

    Columns are those of the declared table ``weekly_features_lms``. With ``as_of``, only
    weeks that have ended by ``as_of`` (``week_end <= as_of``; ``week_end`` is exclusive) are
    returned; their values are the same as without ``as_of``. ``latest_only`` keeps one row
    per student and section, the last of those weeks: the daily scoring path. A section has
    rows from the first week that holds any LMS record of it; roster-only sections have none.

    Raises:
        InvalidInput: if ``source``, ``as_of`` or ``latest_only`` has the wrong type.
    """
    _check_as_of(as_of)
    if not isinstance(latest_only, bool):
        raise InvalidInput(f"latest_only must be True or False, got {latest_only!r}")
    with connection(source) as con:
        with closing(lms_feature_batches(con, as_of=as_of, latest_only=latest_only)) as batches:
            table = pa.concat_tables([LMS_SCHEMA.empty_table(), *batches])
        # through DuckDB, so the dtypes are those of every other frame read from the warehouse
        return con.from_arrow(table).df()


def build_k12_features(source: Source, *, as_of: date | None = None) -> pd.DataFrame:
    """Weekly K-12 features per (student, school year, week of the school year), sorted.

    Columns are those of the declared table ``weekly_features_k12``; ``as_of`` works as in
    :func:`build_lms_features`.

    Raises:
        InvalidInput: if ``source`` or ``as_of`` has the wrong type.
    """
    _check_as_of(as_of)
    with connection(source) as con:
        out = con.sql(K12_SQL, params={"as_of": as_of}).df()
    return out.sort_values(list(CANONICAL["weekly_features_k12"].primary_key), ignore_index=True)


def store_features(
    warehouse: Warehouse,
    *,
    kinds: tuple[FeatureKind, ...] = ("lms", "k12"),
    as_of: date | None = None,
) -> dict[str, int]:
    """Rebuild the declared feature tables in the warehouse; return rows written per table.

    Each table is replaced as a whole in one transaction, so running it twice gives the same
    content (idempotent) and a failure leaves the previous content in place.

    Raises:
        InvalidInput: on an unknown kind or a mistyped ``as_of``.
    """
    _check_as_of(as_of)
    unknown = [k for k in kinds if k not in FEATURE_TABLES]
    if unknown:
        raise InvalidInput(f"unknown feature kinds {unknown}; expected some of {sorted(FEATURE_TABLES)}")
    counts: dict[str, int] = {}
    with warehouse.connect() as con:
        for kind in kinds:
            table = FEATURE_TABLES[kind]
            if kind == "lms":
                with closing(lms_feature_batches(con, as_of=as_of)) as batches:
                    counts[table] = replace_table(con, table, batches)
            else:
                counts[table] = replace_table(con, table, con.sql(K12_SQL, params={"as_of": as_of}))
    logger.info("stored features: %s", counts)
    return counts


def replace_table(
    con: duckdb.DuckDBPyConnection,
    table: str,
    rows: duckdb.DuckDBPyRelation | Iterable[pa.Table],
) -> int:
    """Replace the content of the declared ``table`` in one transaction.

    ``rows`` is a relation or Arrow tables in the table's column order, inserted one by one so
    that memory stays bounded.
    """
    decl = CANONICAL[table]
    target = quote_ident(decl.name)
    con.execute("BEGIN")
    try:
        con.execute(decl.ddl())
        # The name comes from edsight.schema, never from input.
        con.execute(f"DELETE FROM {target}")  # noqa: S608
        if isinstance(rows, duckdb.DuckDBPyRelation):
            rows.insert_into(decl.name)
        else:
            for batch in rows:
                con.from_arrow(batch).insert_into(decl.name)
        n = int(scalar(con, f"SELECT count(*) FROM {quote_ident(decl.name)}"))  # noqa: S608
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return n
