"""`make demo` without serving: models trained and scored, alerts raised, demo logins that work."""

from __future__ import annotations

from pathlib import Path

import pyotp
import pytest
from fastapi.testclient import TestClient
from rich.console import Console

from edsight.config import load_settings
from edsight.demo import demo_accounts_table, run_demo
from edsight.web.app import create_app


@pytest.mark.slow
def test_demo_prepares_the_dashboard_without_serving(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    with out.open("w") as fh:
        overview = run_demo(tmp_path / "home", console=Console(file=fh, width=200))
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
