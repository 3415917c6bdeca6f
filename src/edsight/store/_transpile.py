"""DuckDB SQL -> Spark SQL, with the rewrites where the two dialects differ in meaning (private).

edsight's SQL is written once, for DuckDB (the default engine). :func:`to_spark` parses it with
SQLGlot (``read="duckdb"``) and writes Spark SQL. SQLGlot already handles most differences:

* ``range``/``unnest`` become ``sequence``/``explode``; ``date_diff('day', a, b)`` becomes
  ``datediff(DAY, a, b)``; ``GROUP BY ALL`` and named ``WINDOW`` clauses pass through;
* ``//`` (integer division, truncating in both engines) becomes ``DIV``;
* ``ORDER BY`` gets explicit ``NULLS LAST`` where DuckDB's default (nulls last ascending)
  differs from Spark's (nulls first ascending), so window numbering agrees;
* ``QUALIFY`` becomes a filtered subquery.

What it leaves to us, done here on the syntax tree:

* ``CAST(unnest(list) AS T)`` becomes ``explode(CAST(list AS ARRAY<T>))``: Spark refuses a
  generator nested inside an expression;
* ``$name`` parameters become typed literals (Spark's own parameter markers would work too,
  but literals keep the query text complete for ``EXPLAIN`` and logs). Values are rendered by
  SQLGlot, never by string formatting;
* ``epoch_us(ts)`` (microseconds since 1970) becomes ``unix_micros(CAST(ts AS TIMESTAMP))``:
  DuckDB ``TIMESTAMP`` columns arrive in Spark as ``TIMESTAMP_NTZ`` and ``unix_micros`` wants
  a session-zone timestamp; with the session time zone at UTC the two agree.

Semantics that need no rewrite because the SQL is written to be portable: ``/`` is true
division in both; ``date + integer`` adds days in both; every division is guarded by a
``CASE WHEN d > 0``; sums of integers are cast back to the declared width.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from functools import lru_cache

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from edsight.errors import InvalidInput

__all__ = ["literal", "parameter_names", "parse_duckdb", "to_spark"]

ERR_PARSE = "cannot translate the SQL to Spark: {0}"
ERR_MISSING_PARAM = "the SQL needs parameter(s) {0}; given {1}"
ERR_PARAM_TYPE = (
    "parameter {0!r}: unsupported value type {1} (use None, bool, int, float, str, date or datetime)"
)


@lru_cache(maxsize=64)
def _parse(query: str) -> exp.Expr:
    try:
        tree = sqlglot.parse_one(query, read="duckdb")
    except SqlglotError as exc:
        raise InvalidInput(ERR_PARSE.format(exc)) from exc
    if tree is None:
        raise InvalidInput(ERR_PARSE.format("empty statement"))
    return tree


def parse_duckdb(query: str) -> exp.Expr:
    """The syntax tree of one DuckDB statement (a fresh copy: callers may change it)."""
    return _parse(query).copy()


def parameter_names(tree: exp.Expr) -> set[str]:
    """Names of the ``$name`` parameters in ``tree``."""
    return {str(p.name) for p in tree.find_all(exp.Placeholder) if p.name}


def literal(name: str, value: object) -> exp.Expr:
    """A typed SQL literal for a parameter value."""
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int | float):
        return exp.Literal.number(value)
    if isinstance(value, str):
        return exp.Literal.string(value)
    # datetime is a date subclass: test it first
    if isinstance(value, datetime):
        return exp.cast(exp.Literal.string(value.isoformat(sep=" ")), exp.DataType.Type.TIMESTAMP)
    if isinstance(value, date):
        return exp.cast(exp.Literal.string(value.isoformat()), exp.DataType.Type.DATE)
    raise InvalidInput(ERR_PARAM_TYPE.format(name, type(value).__name__))


def _rewrite(node: exp.Expr, params: Mapping[str, object]) -> exp.Expr:
    if isinstance(node, exp.Placeholder) and node.name:
        return literal(str(node.name), params[str(node.name)])
    if isinstance(node, exp.Cast) and isinstance(node.this, exp.Explode | exp.Unnest):
        # Spark allows no generator inside an expression: cast the array, then explode it
        gen = node.this
        array = gen.this if isinstance(gen, exp.Explode) else gen.expressions[0]
        element = node.args["to"].copy()
        cast = exp.Cast(
            this=array.copy(),
            to=exp.DataType(this=exp.DataType.Type.ARRAY, expressions=[element], nested=True),
        )
        return exp.Explode(this=cast)
    if isinstance(node, exp.Anonymous) and str(node.name).lower() == "epoch_us":
        (arg,) = node.expressions
        ts = exp.cast(arg.copy(), exp.DataType.Type.TIMESTAMPLTZ)
        return exp.Anonymous(this="unix_micros", expressions=[ts])
    return node


def spark_tree(tree: exp.Expr, params: Mapping[str, object] | None = None) -> exp.Expr:
    """``tree`` (DuckDB) with parameters bound and the Spark rewrites applied."""
    given = dict(params or {})
    needed = parameter_names(tree)
    missing = sorted(needed - set(given))
    if missing:
        raise InvalidInput(ERR_MISSING_PARAM.format(missing, sorted(given)))
    return tree.transform(lambda node: _rewrite(node, given), copy=True)


def to_spark(query: str, params: Mapping[str, object] | None = None) -> str:
    """Spark SQL for one DuckDB statement, with ``$name`` parameters bound from ``params``.

    Raises:
        InvalidInput: if the SQL does not parse, or a parameter is missing or of an odd type.
    """
    tree = spark_tree(parse_duckdb(query), params)
    return tree.sql(dialect="spark")
