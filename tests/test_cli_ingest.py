"""`edsight ingest ...` drives the connectors end to end from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from edsight.cli import app
from edsight.synth.canvas import write_canvas
from edsight.synth.district import generate_district

runner = CliRunner()


def test_canvas_files_then_again(tmp_path: Path) -> None:
    write_canvas(tmp_path / "canvas", 60, seed=4, fmt="csv")
    args = ["ingest", "canvas-files", str(tmp_path / "canvas"), "--home", str(tmp_path / "h"), "--json"]
    first = json.loads(runner.invoke(app, args).output)
    assert first["rows_quarantined"] == 0
    assert first["tables"]["person"]["stored"] == 60
    second = json.loads(runner.invoke(app, args).output)
    assert second["already_loaded"] is True


def test_oneroster_attendance_and_discipline(tmp_path: Path) -> None:
    from edsight.ingest.attendance import write_attendance_csv, write_discipline_csv
    from edsight.ingest.oneroster import write_oneroster

    district = generate_district(300, n_years=1, n_schools=3, seed=11)
    write_oneroster(district.tables, tmp_path / "roster.zip")
    write_attendance_csv(district.tables, tmp_path / "attendance.csv")
    write_discipline_csv(district.tables, tmp_path / "discipline.csv")
    home = ["--home", str(tmp_path / "h"), "--json"]
    roster = runner.invoke(app, ["ingest", "oneroster", str(tmp_path / "roster.zip"), *home])
    assert roster.exit_code == 0, roster.output
    assert json.loads(roster.output)["rows_quarantined"] == 0
    att = runner.invoke(app, ["ingest", "attendance", str(tmp_path / "attendance.csv"), *home])
    assert att.exit_code == 0, att.output
    payload = json.loads(att.output)
    assert payload["rows_quarantined"] == 0
    assert payload["rows_stored"] == len(district.tables["attendance"])
    dis = runner.invoke(app, ["ingest", "discipline", str(tmp_path / "discipline.csv"), *home])
    assert json.loads(dis.output)["rows_stored"] == len(district.tables["discipline"])


def test_missing_source_is_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ingest", "oneroster", str(tmp_path / "nope.zip"), "--home", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.startswith("Error: ")


def test_events_with_an_empty_spool(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    result = runner.invoke(app, ["ingest", "events", str(spool), "--home", str(tmp_path / "h"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rows_stored"] == 0


def test_state_tests_needs_a_mapping_and_reads_it(tmp_path: Path) -> None:
    data = Path(__file__).parent / "data" / "state_tests"
    result = runner.invoke(app, ["ingest", "state-tests", str(data / "wi_forward"), "--home", str(tmp_path)])
    assert result.exit_code == 2  # --mapping is required
    bad = tmp_path / "bad.yaml"
    bad.write_text("student_id: [1, 2\n")
    result = runner.invoke(
        app,
        ["ingest", "state-tests", str(data / "wi_forward"), "--mapping", str(bad), "--home", str(tmp_path)],
    )
    assert result.exit_code == 2
    assert result.output.startswith("Error: ")


def test_canvas_api_reads_the_token_from_the_environment(tmp_path: Path) -> None:
    from edsight.testing.canvas_emulator import CanvasEmulator

    emulator = CanvasEmulator.from_synth(30, seed=2)
    token = next(iter(emulator.tokens))
    with emulator.serve() as base_url:
        args = ["ingest", "canvas-api", "--url", base_url, "--token-env", "CANVAS_TOKEN_FOR_TEST"]
        missing = runner.invoke(
            app, [*args, "--home", str(tmp_path / "h")], env={"CANVAS_TOKEN_FOR_TEST": ""}
        )
        assert missing.exit_code == 2
        assert "CANVAS_TOKEN_FOR_TEST is not set" in missing.output
        result = runner.invoke(
            app, [*args, "--home", str(tmp_path / "h"), "--json"], env={"CANVAS_TOKEN_FOR_TEST": token}
        )
    assert result.exit_code == 0, result.output
    assert token not in result.output
    payload = json.loads(result.output)
    assert payload["rows_quarantined"] == 0
    assert payload["rows_stored"] > 0


def test_features_build_after_loading_canvas_files(tmp_path: Path) -> None:
    write_canvas(tmp_path / "canvas", 40, seed=6, fmt="csv")
    home = ["--home", str(tmp_path / "h")]
    assert runner.invoke(app, ["ingest", "canvas-files", str(tmp_path / "canvas"), *home]).exit_code == 0
    result = runner.invoke(app, ["features", "build", "--kind", "lms", *home, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    enrolments = rows["weekly_features_lms"] // 16
    assert enrolments >= 40 * 3
    assert rows["labels_lms"] == enrolments * 12
    bad = runner.invoke(app, ["features", "build", "--kind", "sis", *home])
    assert bad.exit_code == 2
