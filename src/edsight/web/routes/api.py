"""``/api/v1``: the same scoped, audited reads as the pages, as JSON, with pagination.

Authenticate with ``POST /api/v1/session`` and send ``Authorization: Bearer <token>`` (or the
dashboard's session cookie). Errors are ``{"error": {"status": ..., "message": ...}}``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from edsight.errors import NotAuthorized
from edsight.web.analytics import model_cards
from edsight.web.context import context, records, viewer
from edsight.web.queries import MAX_PAGE, Page, Viewer, require
from edsight.web.routes.auth import client_id
from edsight.web.security import LoginRequired, session_token

ViewerDep = Annotated[Viewer, Depends(viewer)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Rows per page.")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Rows to skip.")]


class ErrorBody(BaseModel):
    status: int
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Bad parameter"},
    401: {"model": ErrorResponse, "description": "Missing or expired session"},
    403: {"model": ErrorResponse, "description": "The role may not do this"},
    404: {"model": ErrorResponse, "description": "Not found, or outside the caller's scope"},
    422: {"model": ErrorResponse, "description": "Invalid parameter"},
}

router = APIRouter(tags=["api"], responses=ERRORS)


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)
    totp: str | None = Field(default=None, max_length=12, description="TOTP code (staff accounts).")


class SessionToken(BaseModel):
    token: str
    token_type: str = "bearer"
    idle_timeout_s: int


class GrantOut(BaseModel):
    role: str
    target: str | None


class Me(BaseModel):
    username: str
    roles: list[str]
    grants: list[GrantOut]


class PageOut(BaseModel):
    """One page of rows; ``next_offset`` is null on the last page."""

    items: list[dict[str, Any]]
    total: int
    limit: int
    offset: int
    next_offset: int | None


def _page(page: Page) -> PageOut:
    nxt = page.offset + page.limit
    return PageOut(
        items=records(page.rows),
        total=page.total,
        limit=page.limit,
        offset=page.offset,
        next_offset=nxt if nxt < page.total else None,
    )


@router.post("/session", status_code=201, response_model=SessionToken)
async def create_session(request: Request, body: Credentials) -> SessionToken:
    """Log in; the token authenticates later calls as ``Authorization: Bearer <token>``."""
    ctx = context(request)
    try:
        token = await run_in_threadpool(
            ctx.store.login, body.username, body.password, totp=body.totp, client=client_id(request)
        )
    except NotAuthorized as exc:
        raise LoginRequired(str(exc)) from None
    return SessionToken(token=token, idle_timeout_s=ctx.settings.session_idle_timeout_s)


@router.delete("/session", status_code=204)
async def delete_session(request: Request, v: ViewerDep) -> None:
    """Log out: the token stops working at once."""
    token = session_token(request)
    if token:
        await run_in_threadpool(context(request).store.logout, token)


@router.get("/me", response_model=Me)
def me(v: ViewerDep) -> Me:
    grants = sorted(v.principal.grants, key=str)
    return Me(
        username=v.principal.username,
        roles=sorted(v.roles),
        grants=[GrantOut(role=g.role, target=g.target) for g in grants],
    )


@router.get("/students", response_model=PageOut)
def students(request: Request, v: ViewerDep, limit: Limit = 50, offset: Offset = 0) -> PageOut:
    """Students in the caller's scope by descending current risk (audited)."""
    require(v, "view_student")
    return _page(context(request).queries.students(v, limit=limit, offset=offset, what="api:students"))


@router.get("/students/{person_id}")
def student(request: Request, v: ViewerDep, person_id: str) -> dict[str, Any]:
    """One student's profile: header, risk history, attendance, grades, assessments, interventions."""
    require(v, "view_student", person_id)
    profile = context(request).queries.student_profile(v, person_id)
    out: dict[str, Any] = {}
    for key, value in profile.items():
        out[key] = records(value) if hasattr(value, "to_dict") and hasattr(value, "columns") else value
    out["header"] = records_one(profile["header"])
    out["attendance_now"] = records_one(profile["attendance_now"])
    return out


def records_one(row: dict[str, Any]) -> dict[str, Any]:
    from edsight.web.context import plain

    return {k: plain(v) for k, v in row.items()}


@router.get("/sections", response_model=PageOut)
def sections(request: Request, v: ViewerDep, limit: Limit = 50, offset: Offset = 0) -> PageOut:
    """Sections the caller teaches or oversees."""
    require(v, "view_section")
    return _page(context(request).queries.sections(v, limit=limit, offset=offset))


@router.get("/sections/{section_id}/students", response_model=PageOut)
def section_students(
    request: Request, v: ViewerDep, section_id: str, limit: Limit = 50, offset: Offset = 0
) -> PageOut:
    """A section's students by descending risk, with reason codes and missing work (audited)."""
    require(v, "view_section")
    result = context(request).queries.section_roster(v, section_id, limit=limit, offset=offset)
    return _page(result["page"])


@router.get("/alerts", response_model=PageOut)
def alerts(
    request: Request,
    v: ViewerDep,
    limit: Limit = 50,
    offset: Offset = 0,
    status: Annotated[str | None, Query(pattern="^(open|acknowledged|snoozed|closed)$")] = None,
) -> PageOut:
    """Alerts about students in scope, open ones first (audited)."""
    require(v, "view_student")
    return _page(context(request).queries.alerts(v, limit=limit, offset=offset, status=status))


@router.get("/interventions", response_model=PageOut)
def interventions(request: Request, v: ViewerDep, limit: Limit = 50, offset: Offset = 0) -> PageOut:
    """Interventions of students in scope, newest first (audited)."""
    require(v, "manage_interventions")
    return _page(context(request).queries.interventions(v, limit=limit, offset=offset))


@router.get("/schools")
def schools(request: Request, v: ViewerDep) -> dict[str, Any]:
    """Per school in scope: enrolment, flagged share, mean risk, chronic absence, proficiency
    (small cells suppressed)."""
    if not (v.can("view_school_aggregates") or v.can("view_district_aggregates")):
        raise NotAuthorized("your role may not view school aggregates")
    return {"items": records(context(request).queries.school_table(v))}


@router.get("/schools/{school_id}")
def school(request: Request, v: ViewerDep, school_id: str) -> dict[str, Any]:
    """One school: distribution of current risk (10 bins), ABC indicators, yearly test results."""
    require(v, "view_school_aggregates", school_id)
    summary = context(request).queries.school_summary(v, school_id)
    return {
        "school_id": summary["school_id"],
        "name": summary["name"],
        "risk_counts": summary["risk_counts"],
        "abc": records_one(summary["abc"]),
        "growth": records(summary["growth"]),
    }


@router.get("/trends")
def trends(request: Request, v: ViewerDep) -> dict[str, Any]:
    """Proficiency by subject and year over the schools in scope (small cells suppressed)."""
    if not (v.can("view_district_aggregates") or v.can("view_state_aggregates")):
        raise NotAuthorized("your role may not view district aggregates")
    return {"items": records(context(request).queries.district_trends(v))}


@router.get("/models")
def models(request: Request, v: ViewerDep) -> dict[str, Any]:
    """Model cards: latest version of each saved model with metrics and per-group results."""
    require(v, "view_model_card")
    cards = model_cards(context(request).settings.home)
    for card in cards:
        card["groups"] = [{"name": name, "rows": records(frame)} for name, frame in card.get("groups", [])]
    return {"items": cards}


__all__ = ["router"]
