"""What a report is made of: sections of paragraphs, published tables and charts.

Every table here is already suppressed: builders pass their aggregates through
:func:`publish` (which runs :func:`edsight.governance.suppression.suppress_table`) and only
then format them; renderers never see an unsuppressed number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from edsight.governance.suppression import suppress_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: How a hidden cell reads in a published table.
HIDDEN = "*"
SUPPRESSION_NOTE = (
    "* = not shown: fewer than {min_n} students, or hidden so that a small group cannot be "
    "worked out from the totals (complementary suppression)."
)


@dataclass
class PublishedTable:
    """A table ready to print: text cells only, suppression already applied."""

    caption: str
    frame: pd.DataFrame
    count_columns: tuple[str, ...] = ()
    note: str = ""

    def records(self) -> list[dict[str, str]]:
        return [{str(k): str(v) for k, v in row.items()} for row in self.frame.to_dict(orient="records")]


@dataclass
class Chart:
    """A matplotlib figure drawn from published values only, with a text alternative."""

    title: str
    figure: Figure
    description: str = ""


@dataclass
class Section:
    """One part of a report; ``unavailable`` says why a section has nothing to show."""

    key: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[PublishedTable] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    unavailable: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "available": self.unavailable is None,
            "unavailable": self.unavailable,
            "paragraphs": list(self.paragraphs),
            "tables": [
                {"caption": t.caption, "count_columns": list(t.count_columns), "rows": t.records()}
                for t in self.tables
            ],
            "charts": [c.title for c in self.charts],
        }


@dataclass
class Report:
    """A school or district report: header, narrative and sections."""

    kind: str
    org_id: str
    org_name: str
    as_of: date
    school_year: int | None
    min_n: int
    narrative: str
    sections: list[Section]

    @property
    def title(self) -> str:
        what = "School report" if self.kind == "school" else "District report"
        return f"{what}: {self.org_name}"

    @property
    def year_label(self) -> str:
        return f"{self.school_year}-{(self.school_year + 1) % 100:02d}" if self.school_year else "n/a"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "org_id": self.org_id,
            "org_name": self.org_name,
            "as_of": self.as_of.isoformat(),
            "school_year": self.school_year,
            "min_n": self.min_n,
            "narrative": self.narrative,
            "sections": [s.to_dict() for s in self.sections],
        }

    def close(self) -> None:
        """Free the figures (matplotlib keeps no references to them; this drops ours)."""
        for section in self.sections:
            section.charts.clear()


def publish(
    frame: pd.DataFrame,
    *,
    min_n: int,
    count_col: str = "n",
    by: Sequence[str] | str | None = None,
    value_cols: Sequence[str] = (),
    rate_cols: Sequence[str] = (),
    margins: Sequence[Sequence[str]] | None = None,
) -> pd.DataFrame:
    """``suppress_table`` with the report's minimum n; an empty frame stays empty."""
    if frame.empty:
        out = frame.copy()
        out["suppressed"] = pd.Series(dtype=bool)
        return out
    return suppress_table(
        frame,
        count_col=count_col,
        min_n=min_n,
        by=by,
        value_cols=value_cols,
        rate_cols=rate_cols,
        margins=margins,
    )


def is_number(value: object) -> bool:
    """A published numeric value (not hidden, not top/bottom-coded text)."""
    if value is None or isinstance(value, str | bool) or value is pd.NA:
        return False
    try:
        return not math.isnan(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def fmt_count(value: object) -> str:
    return f"{int(value):,}" if is_number(value) else HIDDEN  # type: ignore[call-overload]


def fmt_rate(value: object) -> str:
    """A share as a whole percentage; coded text (``<5%``) as is; hidden as ``*``."""
    if isinstance(value, str):
        return value
    return f"{100 * float(value):.0f}%" if is_number(value) else HIDDEN  # type: ignore[arg-type]


def fmt_value(value: object, digits: int = 2) -> str:
    return f"{float(value):.{digits}f}" if is_number(value) else HIDDEN  # type: ignore[arg-type]


def fmt_interval(low: object, high: object, digits: int = 2) -> str:
    if is_number(low) and is_number(high):
        return f"[{float(low):.{digits}f}, {float(high):.{digits}f}]"  # type: ignore[arg-type]
    return HIDDEN


def numeric(series: pd.Series) -> np.ndarray:
    """Published values as floats: hidden and coded cells become NaN (charts skip them)."""
    return pd.to_numeric(series.where(series.map(is_number), np.nan), errors="coerce").to_numpy(float)


def words(name: str) -> str:
    return name.replace("_", " ")


def group_label(subgroup: str, value: object) -> str:
    """How a subgroup value reads: ``True`` -> "english learner", ``False`` -> "not english learner"."""
    if isinstance(value, bool | np.bool_):
        return words(subgroup) if value else f"not {words(subgroup)}"
    if subgroup == "sex":
        return {"F": "female", "M": "male", "X": "nonbinary"}.get(str(value), str(value))
    return words(str(value))
