"""The command line: contract from DESIGN.md, errors as one line with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from edsight.cli import app

runner = CliRunner()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed entry point in a real subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "edsight", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("init", "generate", "load", "summary", "lake"):
        assert command in result.output


def test_init_then_load_then_summary(tmp_path: Path, tiny_batch: Path) -> None:
    home = tmp_path / "h"
    result = runner.invoke(app, ["init", "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert (home / "warehouse.duckdb").exists()
    result = runner.invoke(app, ["load", str(tiny_batch), "--home", str(home), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["rows_stored"] == 13
    assert payload["tables"]["person"] == {"read": 6, "stored": 6, "quarantined": 0}
    result = runner.invoke(app, ["summary", "--home", str(home), "--json"])
    assert json.loads(result.output)["attendance"] == 4


def test_home_comes_from_the_environment(tmp_path: Path) -> None:
    home = tmp_path / "from-env"
    result = runner.invoke(app, ["init"], env={"EDSIGHT_HOME": str(home)})
    assert result.exit_code == 0
    assert (home / "warehouse.duckdb").exists()


def test_strict_load_exits_1_when_rows_were_quarantined(tmp_path: Path, make_batch: object) -> None:
    folder = make_batch(organization=[{"org_id": "d1", "name": "D", "org_type": "galaxy"}])  # type: ignore[operator]
    result = runner.invoke(app, ["load", str(folder), "--home", str(tmp_path / "h"), "--strict"])
    assert result.exit_code == 1
    assert "column 'org_type': expected one of" in result.output


def test_bad_input_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    proc = run_cli("load", str(tmp_path / "missing"), "--home", str(tmp_path / "h"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"Error: {tmp_path / 'missing'}: not a directory"]
    assert "Traceback" not in proc.stderr


def test_summary_without_a_warehouse_says_to_init(tmp_path: Path) -> None:
    proc = run_cli("summary", "--home", str(tmp_path / "none"))
    assert proc.returncode == 2
    assert "run `edsight init` first" in proc.stderr


def test_lake_export_and_import(tmp_path: Path, tiny_batch: Path) -> None:
    home, other = tmp_path / "a", tmp_path / "b"
    assert runner.invoke(app, ["load", str(tiny_batch), "--home", str(home)]).exit_code == 0
    result = runner.invoke(app, ["lake", "export", "--home", str(home), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rows"] == {"organization": 3, "person": 6, "attendance": 4}
    result = runner.invoke(app, ["lake", "import", str(home / "lake"), "--home", str(other), "--json"])
    assert json.loads(result.output)["rows_stored"] == 13
