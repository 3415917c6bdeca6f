"""What every route needs: the governance store, the query layer, templates, the viewer."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import Request
from fastapi.templating import Jinja2Templates

from edsight.config import Settings
from edsight.governance.identity import GovernanceStore
from edsight.web.actions import DashboardActions
from edsight.web.queries import DashboardQueries, Viewer
from edsight.web.security import csrf_value, current_principal

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"


@dataclass
class WebContext:
    settings: Settings
    store: GovernanceStore
    queries: DashboardQueries
    templates: Jinja2Templates
    actions: DashboardActions


def context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.edsight
    return ctx


async def viewer(request: Request) -> Viewer:
    """FastAPI dependency: the logged-in viewer (deny by default: no session, no page)."""
    ctx = context(request)
    principal, _ = await current_principal(request, ctx.store)
    route = request.scope.get("route")
    what = getattr(route, "path", request.url.path)
    return Viewer(principal=principal, store=ctx.store, what=str(what))


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows: NaN/NaT as None, dates as ISO strings, numpy scalars as Python ones."""
    out: list[dict[str, Any]] = []
    for row in frame.to_dict(orient="records"):
        out.append({str(k): plain(v) for k, v in row.items()})
    return out


def plain(value: Any) -> Any:
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat() if value == value.normalize() else value.isoformat()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            return plain(value.item())
        except (ValueError, TypeError):
            return str(value)
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _pct(value: Any) -> str:
    v = plain(value)
    if v is None:
        return "suppressed"
    if isinstance(v, str):
        return v
    return f"{float(v):.0%}"


def _num(value: Any, digits: int = 2) -> str:
    v = plain(value)
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int) or float(v).is_integer():
        return f"{int(v):,}" if abs(int(v)) >= 10_000 else str(int(v))  # years stay 2024
    return f"{float(v):,.{digits}f}"


def _cell(value: Any) -> str:
    return "suppressed" if plain(value) is None else _num(value)


def _day(value: Any) -> str:
    v = plain(value)
    return "–" if v is None else str(v)[:10]


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    templates.env.filters["pct"] = _pct
    templates.env.filters["num"] = _num
    templates.env.filters["day"] = _day
    templates.env.filters["cell"] = _cell
    templates.env.globals["csrf_value"] = csrf_value
    return templates


__all__ = ["STATIC_DIR", "WebContext", "context", "make_templates", "records", "viewer"]
