"""edsight ids derived from source-native ids, the same in Python and in SQL.

An edsight id is ``<code>-<entity[:3]>-<16 hex>`` where the hex digits are the
start of md5("<system>/<entity>/<source id>"). Deriving (rather than allocating)
ids keeps reloads idempotent and lets two connectors of the same system (Canvas
files and the Canvas API) land on the same rows. The pair (source id, edsight
id) is also written to ``id_map``, the only place a source id is kept.
"""

from __future__ import annotations

import hashlib

from edsight.sql import quote_literal

# Short codes keep ids readable; unknown systems use their first two letters.
SYSTEM_CODES = {"canvas": "cv", "oneroster": "or", "nwea_map": "mp", "state_test": "st", "sis": "si"}


def _prefix(system: str, entity: str) -> str:
    return f"{SYSTEM_CODES.get(system, system[:2])}-{entity[:3]}-"


def edsight_id(system: str, entity: str, source_id: object) -> str:
    """The edsight id of ``source_id`` of ``entity`` in ``system``."""
    digest = hashlib.md5(f"{system}/{entity}/{source_id}".encode(), usedforsecurity=False)
    return _prefix(system, entity) + digest.hexdigest()[:16]


def edsight_id_sql(system: str, entity: str, source_expr: str) -> str:
    """SQL computing :func:`edsight_id` for the column or expression ``source_expr``."""
    key = quote_literal(f"{system}/{entity}/")
    prefix = quote_literal(_prefix(system, entity))
    return f"({prefix} || substr(md5({key} || CAST({source_expr} AS VARCHAR)), 1, 16))"
