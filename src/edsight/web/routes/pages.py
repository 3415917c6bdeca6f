"""Dashboard pages, one per role's job; every page depends on the logged-in viewer."""

from __future__ import annotations

import io
import logging
from datetime import date, timedelta
from typing import Annotated, Any
from urllib.parse import quote

import pandas as pd
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from edsight.errors import InvalidInput
from edsight.governance.audit import AuditEvent
from edsight.schema import INTERVENTION_OUTCOMES
from edsight.web import charts
from edsight.web.actions import MAX_NOTE, NEXT_STATUS, recipient_ids
from edsight.web.analytics import model_cards, school_gaps, school_value_added_rows
from edsight.web.context import context, viewer
from edsight.web.queries import FLAG_THRESHOLD, NOT_FOUND_STUDENT, NotFound, Page, Viewer, require
from edsight.web.security import CSRF_FIELD, check_csrf

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)
ViewerDep = Annotated[Viewer, Depends(viewer)]
PAGE_SIZE = 50
EXTRACT_DATASETS = {
    "assessments": "State test and interim scores with grade, year and subgroups",
    "attendance": "Yearly absences and tardies per student with subgroups",
}
MIN_PURPOSE_CHARS = 20


def nav(v: Viewer) -> list[tuple[str, str]]:
    """The navigation a viewer's grants allow (links to pages it would be refused are hidden)."""
    items: list[tuple[str, str]] = []
    for child in v.targets("parent"):
        items.append((f"/students/{child}", "My child"))
        items.append((f"/students/{child}/disclosures", "Disclosures"))
    if v.can("view_section") and v.roles & {"teacher", "principal", "district_admin"}:
        items.append(("/sections", "Sections"))
    if v.can("view_student") and v.roles - {"parent"}:
        items.append(("/caseload", "Students"))
        items.append(("/alerts", "Alerts"))
    if v.can("manage_interventions"):
        items.append(("/interventions", "Interventions"))
    for school in v.targets("principal"):
        items.append((f"/schools/{school}", "School"))
    if v.can("view_district_aggregates"):
        items.append(("/district", "District"))
    if v.can("view_state_aggregates"):
        items.append(("/state", "State"))
    if v.can("export_deidentified"):
        items.append(("/research", "Research extract"))
    if v.can("view_model_card"):
        items.append(("/models", "Models and fairness"))
    return items


def render(
    request: Request, v: Viewer | None, template: str, status_code: int = 200, **values: Any
) -> Response:
    ctx = context(request)
    values.update(viewer=v, nav=nav(v) if v else [], path=request.url.path, flag=FLAG_THRESHOLD)
    return ctx.templates.TemplateResponse(request, template, values, status_code=status_code)


def pager(page: Page, path: str) -> dict[str, Any]:
    prev_offset = max(page.offset - page.limit, 0) if page.offset > 0 else None
    next_offset = page.offset + page.limit if page.offset + page.limit < page.total else None
    return {"path": path, "prev": prev_offset, "next": next_offset, "page": page}


@router.get("/")
def home(v: ViewerDep) -> Response:
    items = nav(v)
    return RedirectResponse(items[0][0] if items else "/models", status_code=303)


@router.get("/sections")
def sections(request: Request, v: ViewerDep) -> Response:
    require(v, "view_section")
    page = context(request).queries.sections(v, limit=200, offset=0)
    return render(request, v, "sections.html", title="My sections", page=page)


@router.get("/sections/{section_id}")
def section(
    request: Request, v: ViewerDep, section_id: str, offset: Annotated[int, Query(ge=0)] = 0
) -> Response:
    require(v, "view_section")
    result = context(request).queries.section_roster(v, section_id, limit=PAGE_SIZE, offset=offset)
    rows = result["page"].rows
    sparks = [
        charts.sparkline(h, title=f"Risk trend for {g} {f}")
        for h, g, f in zip(rows["history"], rows["given_name"], rows["family_name"], strict=True)
    ]
    return render(
        request,
        v,
        "section.html",
        title=f"{result['section']['course']} ({result['section']['term']})",
        section=result["section"],
        rows=rows.assign(spark=sparks),
        pager=pager(result["page"], request.url.path),
    )


@router.get("/students/{person_id}")
def student(request: Request, v: ViewerDep, person_id: str) -> Response:
    require(v, "view_student", person_id)
    ctx = context(request)
    profile = ctx.queries.student_profile(v, person_id)
    risk = profile["risk"]
    by_day = risk.groupby("as_of", sort=True)["probability"].max() if len(risk) else pd.Series(dtype=float)
    risk_chart = charts.line_chart(
        {"risk": [(_day_number(d), p) for d, p in by_day.items()]},
        title="Risk over time",
        x_label="date",
        y_label="probability",
    )
    growth = profile["assessments"]
    series: dict[str, list[tuple[float, float]]] = {
        str(subject): [(_day_number(d), s) for d, s in zip(g["test_date"], g["scale_score"], strict=True)]
        for subject, g in growth.groupby("subject")
    }
    growth_chart = charts.line_chart(
        series, title="Growth curve (scale scores)", x_label="year", y_label="score"
    )
    att = profile["attendance"]
    att_chart = charts.bar_chart(
        [str(m)[:7] for m in att["month"]][:12],
        att["absences"].tolist()[:12],
        title="Absences by month",
        unit=" days",
    )
    header = profile["header"]
    manage = v.can("manage_interventions")
    actions = ctx.actions
    return render(
        request,
        v,
        "student.html",
        title=f"{header.get('given_name') or ''} {header.get('family_name') or ''}".strip() or "Student",
        p=profile,
        latest=risk.iloc[0].to_dict() if len(risk) else None,
        risk_chart=risk_chart,
        growth_chart=growth_chart,
        att_chart=att_chart,
        manage=manage,
        recommended=actions.recommendations(v, person_id) if manage else [],
        notes=actions.case_notes(v, [person_id]) if manage else {},
        next_status=NEXT_STATUS,
        outcomes=INTERVENTION_OUTCOMES,
        mine=set(recipient_ids(v)),
        snooze_default=(date.today() + timedelta(days=7)).isoformat(),
        saved=request.query_params.get("saved", "")[:40],
    )


@router.get("/students/{person_id}/disclosures")
def disclosures(request: Request, v: ViewerDep, person_id: str) -> Response:
    """The 34 CFR 99.32 record of who received the student's records (a parent's right)."""
    require(v, "view_disclosures", person_id)
    ctx = context(request)
    if not ctx.queries.in_scope(v, person_id):
        raise NotFound(NOT_FOUND_STUDENT)
    ledger = ctx.queries.disclosures(v, person_id)
    return render(request, v, "disclosures.html", title="Who has received these records", ledger=ledger)


def _back(person_id: str, saved: str) -> RedirectResponse:
    return RedirectResponse(f"/students/{quote(person_id, safe='')}?saved={saved}#int-h", status_code=303)


@router.post("/alerts/{alert_id}")
def alert_update(
    request: Request,
    v: ViewerDep,
    alert_id: str,
    action: Annotated[str, Form(max_length=16)],
    snooze_until: Annotated[str, Form(max_length=10)] = "",
    back: Annotated[str, Form(max_length=16)] = "inbox",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=256)] = "",
) -> Response:
    """Acknowledge, snooze, reopen or close one of the viewer's own alerts."""
    check_csrf(request, csrf_token)
    until = _date(snooze_until) if action == "snooze" else None
    person_id = context(request).actions.set_alert(v, alert_id, action, snooze_until=until)
    if back == "student":
        return RedirectResponse(f"/students/{quote(person_id, safe='')}#alert-h", status_code=303)
    return RedirectResponse("/alerts", status_code=303)


@router.post("/students/{person_id}/interventions")
def intervention_assign(
    request: Request,
    v: ViewerDep,
    person_id: str,
    intervention: Annotated[str, Form(max_length=64)],
    note: Annotated[str, Form(max_length=MAX_NOTE)] = "",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=256)] = "",
) -> Response:
    """Assign one of the supports recommended from the student's latest reason codes."""
    check_csrf(request, csrf_token)
    context(request).actions.assign(v, person_id, intervention, note=note)
    return _back(person_id, "assigned")


@router.post("/interventions/{intervention_id}")
def intervention_update(
    request: Request,
    v: ViewerDep,
    intervention_id: str,
    status: Annotated[str, Form(max_length=16)] = "",
    note: Annotated[str, Form(max_length=MAX_NOTE)] = "",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=256)] = "",
) -> Response:
    """Move a case forward (recommended -> assigned -> active) and/or add a note."""
    check_csrf(request, csrf_token)
    person_id = context(request).actions.update(v, intervention_id, status=status or None, note=note)
    return _back(person_id, "updated")


@router.post("/interventions/{intervention_id}/close")
def intervention_close(
    request: Request,
    v: ViewerDep,
    intervention_id: str,
    outcome: Annotated[str, Form(max_length=16)],
    note: Annotated[str, Form(max_length=MAX_NOTE)] = "",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=256)] = "",
) -> Response:
    """Close a case with its outcome."""
    check_csrf(request, csrf_token)
    person_id = context(request).actions.close(v, intervention_id, outcome=outcome, note=note)
    return _back(person_id, "closed")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput("snooze until: give a date as YYYY-MM-DD") from None


def _day_number(value: Any) -> float:
    """A date as a fractional year (for chart x axes)."""
    ts = pd.Timestamp(value)
    return float(ts.year + (ts.day_of_year - 1) / 365.25)


@router.get("/caseload")
def caseload(request: Request, v: ViewerDep, offset: Annotated[int, Query(ge=0)] = 0) -> Response:
    require(v, "view_student")
    page = context(request).queries.students(v, limit=PAGE_SIZE, offset=offset, what="caseload")
    return render(request, v, "caseload.html", title="Students", pager=pager(page, request.url.path))


@router.get("/interventions")
def interventions(request: Request, v: ViewerDep, offset: Annotated[int, Query(ge=0)] = 0) -> Response:
    require(v, "manage_interventions")
    page = context(request).queries.interventions(v, limit=PAGE_SIZE, offset=offset)
    return render(
        request, v, "interventions.html", title="Intervention log", pager=pager(page, request.url.path)
    )


@router.get("/alerts")
def alerts(
    request: Request, v: ViewerDep, offset: Annotated[int, Query(ge=0)] = 0, status: str | None = None
) -> Response:
    require(v, "view_student")
    page = context(request).queries.alerts(v, limit=PAGE_SIZE, offset=offset, status=status or None)
    return render(
        request,
        v,
        "alerts.html",
        title="Alert inbox",
        pager=pager(page, request.url.path),
        mine=set(recipient_ids(v)),
        snooze_default=(date.today() + timedelta(days=7)).isoformat(),
    )


@router.get("/schools/{school_id}")
def school(request: Request, v: ViewerDep, school_id: str) -> Response:
    require(v, "view_school_aggregates", school_id)
    queries = context(request).queries
    summary = queries.school_summary(v, school_id)
    edges = [i / 10 for i in range(11)]
    dist = charts.histogram(summary["risk_counts"], edges, title="Distribution of current risk")
    growth = summary["growth"]
    growth_chart = charts.line_chart(
        {s: list(zip(g["school_year"], g["mean_score"], strict=True)) for s, g in growth.groupby("subject")},
        title="Mean state-test score by year",
        x_label="school year",
        y_label="mean scale score",
    )
    gaps = school_gaps(queries, school_id)
    va = school_value_added_rows(queries, school_id)
    return render(
        request,
        v,
        "school.html",
        title=summary["name"],
        s=summary,
        dist=dist,
        growth_chart=growth_chart,
        growth=growth,
        gaps=gaps,
        va=va,
    )


def _aggregate_view(request: Request, v: ViewerDep, title: str) -> Response:
    queries = context(request).queries
    table = queries.school_table(v)
    trends = queries.district_trends(v)
    tiles = [
        (r["org_id"], r["name"], r["flagged_rate"] if isinstance(r["flagged_rate"], float) else None)
        for r in table.to_dict(orient="records")
    ]
    tile_map = charts.tile_map(tiles, title="Schools by share of students flagged")
    numeric = pd.to_numeric(trends["proficient"], errors="coerce")
    trend_chart = charts.line_chart(
        {
            str(s): list(zip(g["school_year"], numeric[g.index] * 100, strict=True))
            for s, g in trends.groupby("subject")
        },
        title="Percent proficient by year",
        x_label="school year",
        y_label="percent proficient",
    )
    return render(
        request,
        v,
        "aggregate.html",
        title=title,
        table=table,
        trends=trends,
        tile_map=tile_map,
        trend_chart=trend_chart,
    )


@router.get("/district")
def district(request: Request, v: ViewerDep) -> Response:
    require(v, "view_district_aggregates")
    return _aggregate_view(request, v, "District view")


@router.get("/state")
def state(request: Request, v: ViewerDep) -> Response:
    require(v, "view_state_aggregates")
    return _aggregate_view(request, v, "State view")


@router.get("/models")
def models(request: Request, v: ViewerDep) -> Response:
    require(v, "view_model_card")
    cards = model_cards(context(request).settings.home)
    return render(request, v, "models.html", title="Models and fairness", cards=cards)


@router.get("/research")
def research(request: Request, v: ViewerDep) -> Response:
    require(v, "export_deidentified")
    return render(
        request, v, "research.html", title="Research extract", datasets=EXTRACT_DATASETS, error=None
    )


@router.post("/research")
def research_extract(
    request: Request,
    v: ViewerDep,
    dataset: Annotated[str, Form(max_length=32)],
    purpose: Annotated[str, Form(max_length=2000)],
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=256)] = "",
) -> Response:
    check_csrf(request, csrf_token)
    require(v, "export_deidentified")
    if dataset not in EXTRACT_DATASETS:
        raise InvalidInput(f"dataset must be one of {', '.join(EXTRACT_DATASETS)}")
    if len(purpose.strip()) < MIN_PURPOSE_CHARS:
        return render(
            request,
            v,
            "research.html",
            status_code=400,
            title="Research extract",
            datasets=EXTRACT_DATASETS,
            error=f"describe the purpose of the study in at least {MIN_PURPOSE_CHARS} characters",
        )
    from edsight.governance.deidentify import new_release_key, research_extract

    queries = context(request).queries
    frame = queries.extract_frame(dataset)
    extract = research_extract(frame, key=new_release_key())
    queries.audit.record(
        AuditEvent(
            actor=v.principal.account_id,
            role=v.role_label,
            action="export_deidentified",
            what=f"research_extract:{dataset}:{len(extract)} rows",
            person_ids=(),
            why=purpose.strip(),
        )
    )
    buffer = io.StringIO()
    extract.to_csv(buffer, index=False)
    return StreamingResponse(
        iter([buffer.getvalue()]),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="edsight-{dataset}-deidentified.csv"'},
    )


__all__ = ["nav", "router"]
