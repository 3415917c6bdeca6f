"""Small pieces of SQL handling shared by every stage that talks to DuckDB.

Identifiers quoted here come from :mod:`edsight.schema`, never from input files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb


def quote_ident(name: str) -> str:
    """Quote a declared identifier for DuckDB."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """Quote a declared constant (allowed values, messages) as a SQL string."""
    return "'" + value.replace("'", "''") + "'"


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> Any:
    """The single value of a one-row, one-column query (fully fetched)."""
    rows = con.execute(sql, list(params)).fetchall()
    return rows[0][0] if rows else None


def has_rows(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether ``table`` exists and holds at least one row (reads at most one row)."""
    if not scalar(con, "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]):
        return False
    return bool(scalar(con, "SELECT count(*) FROM (SELECT 1 FROM query_table(?) LIMIT 1)", [table]))
