"""Generated data goes through `edsight load` whole: nothing quarantined, nothing lost."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pyotp
import pytest
from fastapi.testclient import TestClient
from rich.console import Console

from edsight.config import Settings, load_settings
from edsight.demo import demo_accounts_table, run_demo
from edsight.schema import CANONICAL
from edsight.store.warehouse import Warehouse
from edsight.synth.canvas import write_canvas
from edsight.synth.district import write_district
from edsight.web.app import create_app


def test_canvas_files_load_into_the_canonical_model(tmp_path: Path) -> None:
    counts = write_canvas(tmp_path / "canvas", 300, seed=3, fmt="csv")
    wh = Warehouse(Settings(home=tmp_path / "home"))
    wh.init()
    result = wh.load_directory(tmp_path / "canvas")
    assert result.source == "canvas_seed"
    assert result.rows_quarantined == 0, result.problems
    assert set(result.source_tables) == set(counts) - {"training_data"}
    for name, report in result.source_tables.items():
        assert report.rows_read == counts[name] == report.rows_valid, name
    assert result.skipped == ["training_data.csv: derived labels, rebuilt by features"]
    stored = wh.counts()
    assert stored["person"] == 300
    assert stored["course"] == stored["section"] == 8
    assert stored["assignment"] == 64
    assert stored["submission"] == counts["submissions"]
    assert stored["lms_activity"] == counts["canvas_analytics"]
    assert stored["enrollment"] == counts["canvas_analytics"] // 16
    assert stored["id_map"] == 300 + 8 + 8 + 64
    with wh.connect(read_only=True) as con:
        missing, submitted = con.execute(
            "SELECT count(*) FILTER (WHERE missing), count(*) FILTER (WHERE submitted_at IS NOT NULL) "
            "FROM submission"
        ).fetchall()[0]
        assert missing + submitted == counts["submissions"]
        # Week 1 of the term starts on the seed's first day.
        assert con.execute("SELECT min(period_start)::DATE::VARCHAR FROM lms_activity").fetchall() == [
            ("2024-08-15",)
        ]


def test_the_same_canvas_data_as_parquet_changes_nothing(tmp_path: Path) -> None:
    write_canvas(tmp_path / "csv", 120, seed=9, fmt="csv")
    write_canvas(tmp_path / "parquet", 120, seed=9, fmt="parquet")
    wh = Warehouse(Settings(home=tmp_path / "home"))
    wh.init()
    wh.load_directory(tmp_path / "csv")
    before = {t: wh.checksum(t) for t in CANONICAL}
    result = wh.load_directory(tmp_path / "parquet")
    assert result.rows_quarantined == 0
    assert {t: wh.checksum(t) for t in CANONICAL} == before


def test_district_files_load_whole(tmp_path: Path) -> None:
    counts = write_district(tmp_path / "district", 1500, n_years=2, n_schools=6, seed=5)
    wh = Warehouse(Settings(home=tmp_path / "home"))
    wh.init()
    result = wh.load_directory(tmp_path / "district")
    assert result.source == "canonical"
    assert result.rows_quarantined == 0, result.problems
    stored = wh.counts()
    tables = {t: n for t, n in counts.items() if t in CANONICAL}
    assert len(tables) == 14
    for table, n in tables.items():
        assert stored[table] == n, table
        assert pq.read_metadata(tmp_path / "district" / f"{table}.parquet").num_rows == n


@pytest.mark.slow
def test_the_demo_runs_end_to_end(tmp_path: Path) -> None:
    """`make demo` without serving: data, features, models trained and scored, alerts, logins that work."""
    out = tmp_path / "out.txt"
    with out.open("w") as fh:
        overview = run_demo(tmp_path / "home", console=Console(file=fh, width=200))
    district = overview["district"]
    lms = overview["lms"]
    assert isinstance(district, dict)
    assert isinstance(lms, dict)
    assert district["students"] > 4000
    years = district["years"]
    assert len(years) == 4
    for facts in years.values():
        assert 0.08 <= facts["chronic_absence"] <= 0.25
        assert 0.3 <= facts["proficient_math"] <= 0.7
    assert 0.83 <= lms["submission_rate"] <= 0.87
    early = overview["early_warning"]
    assert isinstance(early, dict)
    assert early["rows"] > 3000  # Canvas student-courses only, not K-12 roster sections
    assert early["baseline_auc"] + 0.05 < early["auc"] < 0.95
    printed = out.read_text()
    scores = overview["scores"]
    assert isinstance(scores, dict)
    assert scores["lms"] > 0
    assert scores["k12"] > 0
    assert isinstance(overview["alerts"], int)
    assert overview["alerts"] > 0
    accounts = overview["accounts"]
    assert isinstance(accounts, list)
    assert {a.role for a in accounts} == {
        "teacher",
        "counselor",
        "principal",
        "district_admin",
        "state_analyst",
        "researcher",
        "parent",
    }
    for a in accounts:  # the printed table carries every login
        assert a.username in printed
        assert a.password in printed
        assert a.totp_secret is None or a.totp_secret in printed
    with (tmp_path / "hidden.txt").open("w") as fh:
        Console(file=fh, width=200).print(demo_accounts_table(accounts, show_secrets=False))
    assert all(a.password not in (tmp_path / "hidden.txt").read_text() for a in accounts)
    # The printed credentials log in, and the counselor's inbox holds alerts addressed to it.
    counselor = next(a for a in accounts if a.role == "counselor")
    app = create_app(load_settings(tmp_path / "home"), warm_statistics=False)
    client = TestClient(app, base_url="http://127.0.0.1")
    token = client.post(
        "/api/v1/session",
        json={
            "username": counselor.username,
            "password": counselor.password,
            "totp": pyotp.TOTP(counselor.totp_secret).now(),
        },
    ).json()["token"]
    inbox = client.get("/api/v1/alerts?limit=500", headers={"Authorization": f"Bearer {token}"}).json()
    assert inbox["total"] > 0
    page = client.get("/alerts", headers={"Authorization": f"Bearer {token}"}).text
    assert "Acknowledge" in page
    app.state.edsight.queries.reader.close()
