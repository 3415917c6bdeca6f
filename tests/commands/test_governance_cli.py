"""`edsight accounts|audit|governance ...` end to end on a real data home."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from edsight.commands.governance import accounts_app, audit_app, governance_app
from edsight.store.warehouse import Warehouse

app = typer.Typer()
app.add_typer(accounts_app, name="accounts")
app.add_typer(audit_app, name="audit")
app.add_typer(governance_app, name="governance")
runner = CliRunner()
PASSWORD = "a-Long-enough-passphrase-7"


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDSIGHT_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("EDSIGHT_ARGON2_MEMORY_KIB", "8")


def run(*args: str) -> typer.testing.Result:  # type: ignore[name-defined]
    return runner.invoke(app, list(args))


def test_accounts_lifecycle(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    made = run(
        "accounts", "create", "tina", "--role", "teacher:t1", "--password", PASSWORD, "--home", home, "--json"
    )
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["totp_uri"].startswith("otpauth://totp/")
    weak = run("accounts", "create", "bob", "--role", "parent:p1", "--password", "short", "--home", home)
    assert weak.exit_code == 2
    assert "password rule: at least 12 characters" in weak.output
    assert run("accounts", "grant", "tina", "principal:s1", "--home", home).exit_code == 0
    listed = json.loads(run("accounts", "list", "--home", home, "--json").output)
    assert listed[0]["grants"] == ["principal:s1", "teacher:t1"]
    assert not listed[0]["disabled"]
    assert run("accounts", "revoke", "tina", "principal:s1", "--home", home).exit_code == 0
    assert run("accounts", "disable", "tina", "--home", home).exit_code == 0
    listed = json.loads(run("accounts", "list", "--home", home, "--json").output)
    assert listed[0]["grants"] == ["teacher:t1"]
    assert listed[0]["disabled"]
    unknown = run("accounts", "grant", "nobody", "researcher", "--home", home)
    assert unknown.exit_code == 2
    assert "no account named 'nobody'" in unknown.output


def test_extract_optout_delete_and_audit_verify(
    tmp_path: Path, warehouse: Warehouse, tiny_batch: Path
) -> None:
    warehouse.load_directory(tiny_batch)
    home = str(warehouse.settings.home)
    assert run("governance", "optout", "--student", "p2", "--home", home).exit_code == 0
    out = tmp_path / "release"
    extracted = run(
        "governance",
        "extract",
        "--table",
        "person",
        "--table",
        "attendance",
        "--out",
        str(out),
        "--party",
        "Uni",
        "--home",
        home,
        "--json",
    )
    assert extracted.exit_code == 0, extracted.output
    assert json.loads(extracted.output)["students"] == 6
    assert "given_name" not in pd.read_parquet(out / "person.parquet").columns
    refused = run("governance", "delete", "--student", "p1", "--home", home)
    assert refused.exit_code == 2
    assert "--yes" in refused.output
    deleted = run("governance", "delete", "--student", "p1", "--yes", "--home", home, "--json")
    assert deleted.exit_code == 0, deleted.output
    assert json.loads(deleted.output)["warehouse_rows_deleted"]["person"] == 1
    verified = run("audit", "verify", "--home", home, "--json")
    assert verified.exit_code == 0
    assert json.loads(verified.output)["entries"] == 2

    con = sqlite3.connect(Path(home) / "governance.sqlite3")
    con.execute("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 1")
    con.commit()
    con.close()
    tampered = run("audit", "verify", "--home", home)
    assert tampered.exit_code == 1
    assert "seq 1: content" in tampered.output
    assert "seq 2: link" not in tampered.output
