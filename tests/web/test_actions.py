"""The dashboard's writes: alert acknowledge/snooze, intervention forms, the parent's disclosure
ledger. Every POST needs the CSRF value, is scoped (out of scope -> 404) and is audited."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from edsight.governance.audit import AuditLog, DisclosureLedger

from .conftest import WebWorld


def _csrf(client: TestClient, page: str = "/models") -> str:
    """The browser's CSRF value (a page with a form mints the cookie)."""
    client.get(page)
    token = client.cookies.get("edsight_csrf")
    assert token
    return token


def _audit(world: WebWorld) -> pd.DataFrame:
    return AuditLog(world.store).entries()


def _one(world: WebWorld, sql: str, params: list[object]) -> tuple:
    with world.warehouse() as con:
        rows = con.execute(sql, params).fetchall()
    assert rows, sql
    return rows[0]


def _outside(world: WebWorld, role: str) -> str:
    """A student outside ``role``'s scope (from the app's own scope of that account)."""
    from edsight.web.queries import Viewer

    queries = world.app.state.edsight.queries
    viewer = Viewer(world.store.principal(world.token(role)), world.store)
    inside = queries.scope(viewer).ids
    with world.warehouse() as con:
        everyone = [
            r[0] for r in con.execute("SELECT person_id FROM person WHERE role = 'student'").fetchall()
        ]
    return sorted(set(everyone) - inside)[0]


@pytest.fixture(scope="module")
def alerts(world: WebWorld) -> dict[str, str]:
    """Alerts addressed to the demo counselor (by username) and to someone else."""
    counselor = world.accounts["counselor"].username
    inside = sorted(map(str, world.targets["caseload"]))  # type: ignore[call-overload]
    outside = _outside(world, "counselor")
    rows = {
        "mine": (inside[0], counselor),
        "mine2": (inside[1], counselor),
        "colleague": (inside[0], "someone-else"),
        "outside": (outside, counselor),
    }
    now = datetime.now(UTC).replace(tzinfo=None)
    with world.warehouse() as con:
        for key, (person, recipient) in rows.items():
            con.execute(
                "INSERT INTO alert VALUES (?, ?, 'risk_threshold', ?, ?, 'open', ?)",
                [f"WEB-{key}", person, now, recipient, json.dumps({"as_of": now.date().isoformat()})],
            )
    return {key: f"WEB-{key}" for key in rows}


def _alert(world: WebWorld, alert_id: str) -> tuple[str, dict]:
    status, detail = _one(world, "SELECT status, detail FROM alert WHERE alert_id = ?", [alert_id])
    return status, json.loads(detail or "{}")


def test_inbox_offers_actions_on_own_alerts_only(world: WebWorld, alerts: dict[str, str]) -> None:
    page = world.client("counselor").get("/alerts?status=open").text
    assert f'action="/alerts/{alerts["mine"]}"' in page
    assert f'action="/alerts/{alerts["colleague"]}"' not in page
    assert "sent to a colleague" in page


def test_acknowledge_needs_csrf_then_changes_status_and_is_audited(
    world: WebWorld, alerts: dict[str, str]
) -> None:
    client = world.client("counselor")
    refused = client.post(f"/alerts/{alerts['mine']}", data={"action": "acknowledge"}, follow_redirects=False)
    assert refused.status_code == 403
    assert _alert(world, alerts["mine"])[0] == "open"
    before = len(_audit(world))
    token = _csrf(client)
    done = client.post(
        f"/alerts/{alerts['mine']}",
        data={"action": "acknowledge", "csrf_token": token},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/alerts"
    assert _alert(world, alerts["mine"])[0] == "acknowledged"
    entries = _audit(world).iloc[before:]
    hit = entries[entries["action"] == "update_alert"]
    assert len(hit) == 1
    assert hit["what"].iloc[0].endswith(":acknowledged")
    assert len(hit["person_refs"].iloc[0]) == 1


def test_snooze_records_the_date_and_rejects_bad_ones(world: WebWorld, alerts: dict[str, str]) -> None:
    client = world.client("counselor")
    token = _csrf(client)
    until = (datetime.now(UTC).date() + timedelta(days=5)).isoformat()
    bad = client.post(
        f"/alerts/{alerts['mine2']}",
        data={"action": "snooze", "snooze_until": "2001-01-01", "csrf_token": token},
        follow_redirects=False,
    )
    assert bad.status_code == 400
    ok = client.post(
        f"/alerts/{alerts['mine2']}",
        data={"action": "snooze", "snooze_until": until, "csrf_token": token, "back": "student"},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    assert ok.headers["location"].startswith("/students/")
    status, detail = _alert(world, alerts["mine2"])
    assert (status, detail["snooze_until"]) == ("snoozed", until)


@pytest.mark.parametrize("which", ["colleague", "outside"])
def test_someone_elses_or_out_of_scope_alert_is_404(
    world: WebWorld, alerts: dict[str, str], which: str
) -> None:
    client = world.client("counselor")
    token = _csrf(client)
    response = client.post(
        f"/alerts/{alerts[which]}",
        data={"action": "acknowledge", "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 404
    assert _alert(world, alerts[which])[0] == "open"


def test_counselor_assigns_updates_and_closes_a_case(world: WebWorld) -> None:
    client = world.client("counselor")
    token = _csrf(client)
    student = sorted(map(str, world.targets["caseload"]))[2]  # type: ignore[call-overload]
    page = client.get(f"/students/{student}").text
    assert "Assign a support" in page
    assert 'name="intervention"' in page
    offered = page.split('name="intervention" value="')[1].split('"')[0]
    before = len(_audit(world))
    assigned = client.post(
        f"/students/{student}/interventions",
        data={"intervention": offered, "note": "talked to the family", "csrf_token": token},
        follow_redirects=False,
    )
    assert assigned.status_code == 303
    iid, status, owner = _one(
        world,
        "SELECT intervention_id, status, owner_id FROM intervention WHERE person_id = ? "
        "AND intervention_type = ?",
        [student, offered],
    )
    assert (status, owner) == ("assigned", world.accounts["counselor"].username)
    moved = client.post(
        f"/interventions/{iid}",
        data={"status": "active", "note": "started", "csrf_token": token},
        follow_redirects=False,
    )
    assert moved.status_code == 303
    closed = client.post(
        f"/interventions/{iid}/close",
        data={"outcome": "improved", "csrf_token": token},
        follow_redirects=False,
    )
    assert closed.status_code == 303
    assert _one(world, "SELECT status, outcome FROM intervention WHERE intervention_id = ?", [iid]) == (
        "closed",
        "improved",
    )
    with world.warehouse() as con:
        log = con.execute(
            "SELECT status, note FROM intervention_note WHERE intervention_id = ? ORDER BY noted_at", [iid]
        ).fetchall()
    assert log == [("assigned", "talked to the family"), ("active", "started"), ("closed", None)]
    entries = _audit(world).iloc[before:]
    changes = entries[entries["action"] == "manage_interventions"]["what"].tolist()
    assert changes[0].endswith(":assigned")
    assert len(changes) == 3
    assert changes[-1].endswith(":closed:improved")


def test_intervention_forms_are_scoped_and_need_csrf(world: WebWorld) -> None:
    client = world.client("counselor")
    token = _csrf(client)
    student = sorted(map(str, world.targets["caseload"]))[3]  # type: ignore[call-overload]
    outside = _outside(world, "counselor")
    no_csrf = client.post(
        f"/students/{student}/interventions", data={"intervention": "mentoring"}, follow_redirects=False
    )
    assert no_csrf.status_code == 403
    out = client.post(
        f"/students/{outside}/interventions",
        data={"intervention": "mentoring", "csrf_token": token},
        follow_redirects=False,
    )
    assert out.status_code == 404
    with world.warehouse() as con:
        foreign = con.execute(
            "SELECT intervention_id FROM intervention WHERE person_id NOT IN (SELECT unnest(?::VARCHAR[])) "
            "AND status <> 'closed' LIMIT 1",
            [sorted(map(str, world.targets["caseload"]))],  # type: ignore[call-overload]
        ).fetchall()[0][0]
    for path, data in (
        (f"/interventions/{foreign}", {"note": "x", "csrf_token": token}),
        (f"/interventions/{foreign}/close", {"outcome": "improved", "csrf_token": token}),
    ):
        assert client.post(path, data=data, follow_redirects=False).status_code == 404
    assert _one(world, "SELECT status FROM intervention WHERE intervention_id = ?", [foreign])[0] != "closed"
    unknown = client.post(
        f"/students/{student}/interventions",
        data={"intervention": "space_camp", "csrf_token": token},
        follow_redirects=False,
    )
    assert unknown.status_code == 400
    parent = world.client("parent")
    child = str(world.targets["child"])
    ptoken = _csrf(parent, f"/students/{child}")
    refused = parent.post(
        f"/students/{child}/interventions",
        data={"intervention": "mentoring", "csrf_token": ptoken},
        follow_redirects=False,
    )
    assert refused.status_code == 403


def test_parent_reads_the_childs_disclosure_ledger(world: WebWorld) -> None:
    child = str(world.targets["child"])
    DisclosureLedger(world.store).record(
        party="State University research office",
        basis="99.31(a)(6) studies",
        fields=["attendance", "assessment_result"],
        person_ids=[child],
        actor="registrar",
    )
    client = world.client("parent")
    page = client.get(f"/students/{child}/disclosures")
    assert page.status_code == 200
    assert "State University research office" in page.text
    assert "99.31(a)(6) studies" in page.text
    assert f'href="/students/{child}/disclosures"' in page.text  # in the parent's navigation
    entries = _audit(world)
    assert entries["action"].iloc[-1] == "view_disclosures"
    other = _outside(world, "parent")
    assert client.get(f"/students/{other}/disclosures").status_code == 403
    assert world.client("teacher").get(f"/students/{child}/disclosures").status_code == 403
