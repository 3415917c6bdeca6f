"""Intervention recommendations, case tracking and exports on a real warehouse."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from edsight.errors import InvalidInput
from edsight.ops.delivery import WebhookChannel, WebhookConfig, verify_signature
from edsight.ops.interventions import (
    CATALOGUE,
    assign_intervention,
    case_log,
    close_intervention,
    export_csv,
    export_webhook,
    recommend,
    update_intervention,
)
from edsight.store.warehouse import Warehouse


@pytest.fixture
def con(warehouse: Warehouse) -> Iterator[duckdb.DuckDBPyConnection]:
    with warehouse.connect() as c:
        people = pd.DataFrame(
            {"person_id": ["s1", "s2", "c1"], "role": ["student", "student", "counselor"],
             "directory_opt_out": [False, False, False]}
        )  # fmt: skip
        c.register("people", people)
        c.execute("INSERT INTO person BY NAME SELECT * FROM people")
        c.unregister("people")
        yield c


def test_recommendations_follow_the_main_reason() -> None:
    reasons = [{"code": "MISSING_WORK"}, {"code": "CHRONIC_ABSENCE"}, {"code": "GRADE_LOW"}]
    recs = recommend(reasons)
    assert recs[0]["intervention"] == "missing_work_plan"
    assert {"attendance_outreach", "family_conference"} & {r["intervention"] for r in recs}
    assert all(r["rationale"] for r in recs)
    assert recommend([{"code": "OTHER"}]) == []
    attendance_first = recommend([{"code": "ATTENDANCE_LOW"}, {"code": "MISSING_WORK"}])
    assert attendance_first[0]["intervention"] == "attendance_outreach"


def test_every_catalogue_entry_addresses_a_reason_code() -> None:
    from edsight.models import _explain_catalogue as catalogue

    source = Path(catalogue.__file__).read_text()
    for item in CATALOGUE.values():
        assert any(f'"{code}"' in source for code in item.addresses), item.key


def test_case_lifecycle_is_logged(con: duckdb.DuckDBPyConnection) -> None:
    iid = assign_intervention(
        con, "s1", "tutoring", owner_id="c1", author_id="c1", start=date(2026, 10, 1),
        reasons=[{"code": "GRADE_LOW"}], status="recommended", note="suggested by the weekly run",
    )  # fmt: skip
    again = assign_intervention(con, "s1", "tutoring", owner_id="c1", author_id="c1", start=date(2026, 10, 1))
    assert again == iid
    update_intervention(con, iid, author_id="c1", status="assigned")
    update_intervention(con, iid, author_id="c1", status="active", note="twice a week")
    update_intervention(con, iid, author_id="c1", note="attended 3 of 4")
    with pytest.raises(InvalidInput, match="cannot become recommended"):
        update_intervention(con, iid, author_id="c1", status="recommended")
    close_intervention(con, iid, author_id="c1", outcome="improved", end=date(2026, 12, 1))
    with pytest.raises(InvalidInput, match="already closed"):
        close_intervention(con, iid, author_id="c1", outcome="improved", end=date(2026, 12, 2))
    log = case_log(con, iid)
    assert log["status"].tolist() == ["recommended", "assigned", "active", "active", "closed"]
    assert log["noted_at"].is_monotonic_increasing
    row = con.execute("SELECT status, outcome, reason_codes FROM intervention").fetchall()
    assert row[0][:2] == ("closed", "improved")
    assert json.loads(row[0][2]) == ["GRADE_LOW"]


def test_bad_cases_are_refused(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(InvalidInput, match="unknown intervention type 'astrology'"):
        assign_intervention(con, "s1", "astrology", owner_id="c1", author_id="c1", start=date(2026, 1, 1))
    with pytest.raises(InvalidInput, match="unknown student"):
        assign_intervention(con, "nobody", "tutoring", owner_id="c1", author_id="c1", start=date(2026, 1, 1))
    iid = assign_intervention(con, "s2", "mentoring", owner_id="c1", author_id="c1", start=date(2026, 1, 1))
    with pytest.raises(InvalidInput, match="unknown outcome"):
        close_intervention(con, iid, author_id="c1", outcome="great", end=date(2026, 2, 1))
    with pytest.raises(InvalidInput, match="no intervention"):
        update_intervention(con, "iv-missing", author_id="c1", note="x")


def test_exports_are_scoped_csv_and_signed_webhook(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    from tests.ops.test_delivery import SECRET, Receiver

    assign_intervention(con, "s1", "tutoring", owner_id="c1", author_id="c1", start=date(2026, 10, 1))
    assign_intervention(con, "s2", "mentoring", owner_id="c1", author_id="c1", start=date(2026, 10, 2))
    out = tmp_path / "cases.csv"
    assert export_csv(con, out, person_ids=["s2"]) == 1
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["person_id"] for r in rows] == ["s2"]
    assert rows[0]["start_date"] == "2026-10-02"
    receiver = Receiver()
    try:
        channel = WebhookChannel(WebhookConfig(name="cms", url=receiver.url, secret=SECRET))  # type: ignore[arg-type]
        assert export_webhook(con, channel) == 2
    finally:
        receiver.close()
    assert receiver.bodies[0]["kind"] == "interventions"
    assert sorted(c["person_id"] for c in receiver.bodies[0]["cases"]) == ["s1", "s2"]
    assert verify_signature  # the receiver verified the signature before accepting
