"""Each role's pages render in-process with real data, show what they should, and are audited."""

from __future__ import annotations

import pandas as pd
import pytest

from edsight.governance.audit import AuditLog

from .conftest import WebWorld

HOME = {
    "teacher": "/sections",
    "counselor": "/caseload",
    "principal": "/sections",
    "district_admin": "/sections",
    "state_analyst": "/district",
    "researcher": "/research",
}


def _audit(world: WebWorld) -> pd.DataFrame:
    return AuditLog(world.store).entries()


@pytest.mark.parametrize("role", sorted(HOME))
def test_home_redirects_to_the_roles_first_page(world: WebWorld, role: str) -> None:
    response = world.client(role).get("/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == HOME[role]


def test_parent_home_is_the_child(world: WebWorld) -> None:
    response = world.client("parent").get("/", follow_redirects=True)
    assert response.url.path == f"/students/{world.targets['child']}"
    for heading in ("Risk", "Attendance", "Grades", "Assessments and growth", "Interventions"):
        assert f">{heading}</h2>" in response.text


def test_teacher_section_sorted_by_risk_with_reasons_and_sparklines(world: WebWorld) -> None:
    client = world.client("teacher")
    listing = client.get("/sections")
    assert listing.status_code == 200
    assert "<caption>Sections" in listing.text
    with world.warehouse() as con:
        section = con.execute(
            "SELECT t.section_id FROM enrollment t JOIN enrollment e ON e.section_id = t.section_id "
            "AND e.role = 'student' JOIN risk_score r ON r.person_id = e.person_id "
            "WHERE t.role = 'teacher' AND t.person_id = ? GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
            [world.targets["teacher"]],
        ).fetchall()
    assert section, "the fixture scores some of the demo teacher's sections"
    before = len(_audit(world))
    page = client.get(f"/sections/{section[0][0]}")
    assert page.status_code == 200
    assert page.text.count('class="chart sparkline"') >= 1
    assert "<caption>Students by current risk</caption>" in page.text
    api = client.get(f"/api/v1/sections/{section[0][0]}/students?limit=500").json()["items"]
    probs = [r["probability"] for r in api if r["probability"] is not None]
    assert probs == sorted(probs, reverse=True)
    assert any(r["reasons"] for r in api), "reason codes reach the roster"
    entries = _audit(world).iloc[before:]
    assert (entries["action"] == "view_section").any()


def test_student_profile_is_audited_with_a_pseudonym(world: WebWorld) -> None:
    child = str(world.targets["child"])
    before = len(_audit(world))
    page = world.client("teacher").get(f"/students/{child}")
    assert page.status_code == 200
    assert "<svg" in page.text
    assert "Growth curve" in page.text
    entries = _audit(world).iloc[before:]
    mine = entries[entries["action"] == "view_student"]
    assert len(mine) == 1
    log = AuditLog(world.store)
    assert mine["person_refs"].iloc[0] == [log.pseudonym(child)]
    assert child not in mine["what"].iloc[0]
    assert log.verify().ok


def test_principal_school_view(world: WebWorld) -> None:
    page = world.client("principal").get(f"/schools/{world.targets['school']}")
    assert page.status_code == 200
    for heading in ("Risk distribution", "ABC indicators", "Achievement and growth", "Gaps:", "Value-added"):
        assert heading in page.text
    assert 'class="chart histogram"' in page.text


def test_state_view_is_suppressed_and_student_free(world: WebWorld) -> None:
    before = len(_audit(world))
    page = world.client("state_analyst").get("/state")
    assert page.status_code == 200
    assert 'class="chart tilemap"' in page.text
    assert "Map of schools" in page.text
    api = world.client("state_analyst").get("/api/v1/schools").json()["items"]
    assert api
    assert all("suppressed" in row for row in api)
    for row in api:
        assert row["n"] is None or row["n"] == 0 or row["n"] >= 10
    assert len(_audit(world)) == before, "aggregates read no student rows"


def test_counselor_caseload_and_intervention_log(world: WebWorld) -> None:
    client = world.client("counselor")
    caseload = client.get("/caseload")
    assert caseload.status_code == 200
    listed = set(pd.Series(caseload.text.split('href="/students/')[1:]).str.split('"').str[0])
    assert listed
    assert listed <= set(world.targets["caseload"])
    assert client.get("/interventions").status_code == 200
    assert client.get("/alerts?status=open").status_code == 200


def test_models_page_without_and_with_a_card(world: WebWorld) -> None:
    client = world.client("researcher")
    assert "No saved models yet" in client.get("/models").text


def test_research_extract_is_deidentified_and_audited(world: WebWorld) -> None:
    client = world.client("researcher")
    client.get("/research")
    token = client.cookies.get("edsight_csrf")
    short = client.post("/research", data={"dataset": "assessments", "purpose": "short", "csrf_token": token})
    assert short.status_code == 400
    purpose = "Study of mathematics growth across middle-school transitions"
    response = client.post(
        "/research", data={"dataset": "assessments", "purpose": purpose, "csrf_token": token}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    header = response.text.splitlines()[0]
    assert "scale_score" in header
    assert "S000" not in response.text, "no warehouse ids in a de-identified extract"
    last = _audit(world).iloc[-1]
    assert last["action"] == "export_deidentified"
    assert last["why"] == purpose


def test_logout_ends_the_session(world: WebWorld) -> None:
    client = world.client(None)
    acct = world.accounts["parent"]
    client.get("/login")
    token = client.cookies.get("edsight_csrf")
    client.post("/login", data={"username": acct.username, "password": acct.password, "csrf_token": token})
    assert client.get("/api/v1/me").status_code == 200
    assert client.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    client.cookies.delete("edsight_session")
    assert client.get("/api/v1/me").status_code == 401
