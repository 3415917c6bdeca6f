"""Leak-free point-in-time weekly features (LMS and K-12), built in SQL on DuckDB.

Each row describes one student (and, for LMS data, one section) at the *end* of one week and
is computed only from records timestamped before that end: a feature row of week ``w`` never
changes when anything at or after the end of week ``w`` is added, changed or removed. See
``docs/features.md`` for every column's definition.

Public functions take either a :class:`~edsight.store.warehouse.Warehouse` or an open DuckDB
connection to a database holding the canonical tables. ``build_*`` return DataFrames (fine up
to a few million rows); :func:`store_features` writes the declared tables inside DuckDB
without materialising anything in Python, which is what the CLI and large districts use.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Literal

import duckdb
import pandas as pd

from edsight.errors import InvalidInput
from edsight.features._weekly_k12 import K12_SQL
from edsight.features._weekly_lms import LMS_SQL
from edsight.schema import CANONICAL
from edsight.sql import quote_ident, scalar
from edsight.store.warehouse import Warehouse

__all__ = [
    "FEATURE_TABLES",
    "Source",
    "build_k12_features",
    "build_lms_features",
    "connection",
    "store_features",
]

logger = logging.getLogger(__name__)

Source = Warehouse | duckdb.DuckDBPyConnection
FeatureKind = Literal["lms", "k12"]

FEATURE_TABLES: dict[str, str] = {"lms": "weekly_features_lms", "k12": "weekly_features_k12"}
_SQL: dict[str, str] = {"lms": LMS_SQL, "k12": K12_SQL}


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


def _relation(
    con: duckdb.DuckDBPyConnection, kind: FeatureKind, as_of: date | None
) -> duckdb.DuckDBPyRelation:
    return con.sql(_SQL[kind], params={"as_of": as_of})


def _frame(source: Source, kind: FeatureKind, as_of: date | None) -> pd.DataFrame:
    _check_as_of(as_of)
    with connection(source) as con:
        out = _relation(con, kind, as_of).df()
    keys = list(CANONICAL[FEATURE_TABLES[kind]].primary_key)
    return out.sort_values(keys, ignore_index=True)


def build_lms_features(source: Source, *, as_of: date | None = None) -> pd.DataFrame:
    """Weekly LMS features per (student, section, week of the term), sorted by that key.

    Columns are those of the declared table ``weekly_features_lms``. With ``as_of``, only
    weeks that have ended by ``as_of`` (``week_end <= as_of``; ``week_end`` is exclusive) are
    returned; their values are the same as without ``as_of``.

    Raises:
        InvalidInput: if ``source`` or ``as_of`` has the wrong type.
    """
    return _frame(source, "lms", as_of)


def build_k12_features(source: Source, *, as_of: date | None = None) -> pd.DataFrame:
    """Weekly K-12 features per (student, school year, week of the school year), sorted.

    Columns are those of the declared table ``weekly_features_k12``; ``as_of`` works as in
    :func:`build_lms_features`.

    Raises:
        InvalidInput: if ``source`` or ``as_of`` has the wrong type.
    """
    return _frame(source, "k12", as_of)


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
            counts[FEATURE_TABLES[kind]] = replace_table(
                con, FEATURE_TABLES[kind], _relation(con, kind, as_of)
            )
    logger.info("stored features: %s", counts)
    return counts


def replace_table(con: duckdb.DuckDBPyConnection, table: str, rel: duckdb.DuckDBPyRelation) -> int:
    """Replace the content of the declared ``table`` by ``rel`` in one transaction."""
    decl = CANONICAL[table]
    con.execute("BEGIN")
    try:
        con.execute(decl.ddl())
        # The name comes from edsight.schema, never from input.
        con.execute(f"DELETE FROM {quote_ident(decl.name)}")  # noqa: S608
        rel.insert_into(decl.name)
        n = int(scalar(con, f"SELECT count(*) FROM {quote_ident(decl.name)}"))  # noqa: S608
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return n
