"""School and district reports: content, suppression, no identifiers, graceful gaps, CLI."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edsight.commands.report import report_app
from edsight.config import Settings
from edsight.errors import InvalidInput
from edsight.features.weekly import store_features
from edsight.ops.reports import (
    Report,
    ReportOptions,
    build_district_report,
    build_school_report,
    write_report,
)
from edsight.store.warehouse import Warehouse
from edsight.synth.district import write_district

SCHOOL = "SCH002"  # the middle school: tested grades with prior-year scores (growth, value-added)
HEADINGS = (
    "Risk overview",
    "Attendance, behavior and course performance",
    "Achievement gaps",
    "Growth (student growth percentiles)",
    "Value-added",
    "Trends",
)
SCORED_ON = (date(2024, 3, 1), date(2024, 5, 20))


def _insert_scores(wh: Warehouse) -> None:
    """Risk scores on two dates for students of grades 6-12 (test data: a rule on their
    attendance and course failures so far, written through the warehouse's own table)."""
    with wh.connect() as con:
        for day in SCORED_ON:
            for target, weight in (("dropout_1y", 1.0), ("non_graduation_1y", 1.4)):
                con.execute(
                    """INSERT INTO risk_score
                    SELECT person_id, NULL, ?::DATE, ?,
                           least(0.99, greatest(0.01, ? * (0.05 + 2.5 * (1 - coalesce(attendance_rate, 1))
                                                         + 0.15 * core_f_count + 0.1 * incidents_major))),
                           'test-rule:1', NULL
                    FROM weekly_features_k12
                    WHERE grade_level >= 6 AND week_end <= ?::DATE
                    QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY week_end DESC) = 1""",
                    [day, target, weight, day],
                )


@dataclass
class Built:
    warehouse: Warehouse
    school: Report
    district: Report
    files: dict[str, Path]
    identifiers: dict[str, set[str]]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("reports")
    write_district(root / "files", 600, n_years=3, n_schools=3, seed=7)
    wh = Warehouse(Settings(home=root / "home"))
    wh.init()
    wh.load_directory(root / "files")
    store_features(wh, kinds=("k12",))
    _insert_scores(wh)
    options = ReportOptions(sgp_min_students=30)  # a 600-student district: ~45 students per grade
    school = build_school_report(wh, SCHOOL, options=options)
    district = build_district_report(wh, options=options)
    files = {}
    for name, report in (("school", school), ("district", district)):
        for suffix in (".html", ".pdf"):
            files[name + suffix] = write_report(report, root / "out" / f"{name}{suffix}")
    with wh.connect(read_only=True) as con:
        people = con.sql("SELECT person_id, given_name, family_name, local_id, state_id FROM person").df()
    identifiers = {
        col: {str(v) for v in people[col].dropna()} for col in ("person_id", "given_name", "family_name")
    }
    identifiers["number"] = {str(v) for col in ("local_id", "state_id") for v in people[col].dropna()}
    return Built(wh, school, district, files, identifiers)


def _pdf_text(path: Path) -> str:
    pypdf = pytest.importorskip("pypdf")
    return "\n".join(page.extract_text() or "" for page in pypdf.PdfReader(path).pages)


@pytest.mark.parametrize("name", ["school", "district"])
def test_html_and_pdf_hold_every_section_and_charts(built: Built, name: str) -> None:
    html = built.files[f"{name}.html"].read_text(encoding="utf-8")
    pdf = built.files[f"{name}.pdf"]
    assert pdf.read_bytes().startswith(b"%PDF")
    assert pdf.stat().st_size > 10_000
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in html
    assert html.count("<svg") >= 4  # charts are inline
    assert not re.search(r"""(src|href)=["'](https?:|//)""", html)  # no external assets
    text = _pdf_text(pdf)
    for heading in HEADINGS:
        assert heading in text


def test_sections_have_data_on_a_three_year_district(built: Built) -> None:
    for report in (built.school, built.district):
        missing = {s.key: s.unavailable for s in report.sections if s.unavailable}
        assert not missing, missing
        keys = [s.key for s in report.sections]
        assert keys == ["risk", "abc", "gaps", "growth", "value_added", "trends"]
    school = {s.key: s for s in built.school.sections}
    assert any("Teacher value-added" in t.caption for t in school["value_added"].tables)
    assert "flagged" in built.school.narrative
    assert built.district.narrative.startswith("Synthetic Unified School District: 3 schools")


def _published_counts(report: Report) -> list[tuple[str, str]]:
    out = []
    for section in report.sections:
        for table in section.tables:
            for row in table.records():
                out += [(f"{section.key}/{table.caption}/{c}", row[c]) for c in table.count_columns]
    return out


@pytest.mark.parametrize("name", ["school", "district"])
def test_every_published_count_is_zero_or_at_least_min_n(built: Built, name: str) -> None:
    report = built.school if name == "school" else built.district
    counts = _published_counts(report)
    assert len(counts) > 20
    hidden = 0
    for where, value in counts:
        if value in ("*", ""):
            hidden += value == "*"
            continue
        n = int(value.replace(",", ""))
        assert n == 0 or n >= report.min_n, (where, value)
    assert hidden > 0  # the subgroup tables of a 600-student district have small groups


def test_a_higher_minimum_hides_more_and_still_holds(built: Built) -> None:
    report = build_school_report(
        built.warehouse, SCHOOL, options=ReportOptions(min_n=40, sgp_min_students=30)
    )
    counts = _published_counts(report)
    shown = [int(v.replace(",", "")) for _, v in counts if v not in ("*", "")]
    assert all(n == 0 or n >= 40 for n in shown)
    assert sum(v == "*" for _, v in counts) > sum(v == "*" for _, v in _published_counts(built.school))


@pytest.mark.parametrize("name", ["school", "district"])
def test_no_person_identifiers_in_html_or_pdf(built: Built, name: str) -> None:
    html = built.files[f"{name}.html"].read_text(encoding="utf-8")
    text = _pdf_text(built.files[f"{name}.pdf"])
    ids = built.identifiers
    for document in (html, text):
        words = set(re.findall(r"[A-Za-z][A-Za-z'-]*", document))
        numbers = set(re.findall(r"[A-Za-z]*\d+", document))
        assert not words & ids["given_name"]
        assert not words & ids["family_name"]
        assert not numbers & ids["person_id"]
        assert not numbers & ids["number"]
    assert len(ids["person_id"]) > 600
    assert len(ids["given_name"]) > 50


def test_as_of_ignores_later_scores_and_picks_the_school_year(built: Built) -> None:
    report = build_school_report(built.warehouse, SCHOOL, as_of=date(2024, 4, 1))
    risk = next(s for s in report.sections if s.key == "risk")
    assert "(scored 2024-03-01)" in risk.paragraphs[0]
    assert report.school_year == 2023
    earlier = build_school_report(built.warehouse, SCHOOL, as_of=date(2022, 10, 1))
    assert earlier.school_year == 2022
    risk = next(s for s in earlier.sections if s.key == "risk")
    assert risk.unavailable is not None  # no scores before 2024
    growth = next(s for s in earlier.sections if s.key == "growth")
    assert growth.unavailable is not None
    assert "two consecutive school years" in growth.unavailable


def test_unknown_school_or_district_is_named(built: Built) -> None:
    with pytest.raises(InvalidInput, match=r"unknown school 'NOPE'.*known: SCH001, SCH002, SCH003"):
        build_school_report(built.warehouse, "NOPE")
    with pytest.raises(InvalidInput, match=r"unknown school 'DST001'"):
        build_school_report(built.warehouse, "DST001")  # a district is not a school
    with pytest.raises(InvalidInput, match=r"unknown district 'SCH001'.*known: DST001"):
        build_district_report(built.warehouse, "SCH001")
    with pytest.raises(InvalidInput, match=r"report\.txt: reports are written as \.html or \.pdf"):
        write_report(built.school, Path("report.txt"))


def test_a_warehouse_without_scores_or_features_degrades_section_by_section(
    warehouse: Warehouse, tiny_batch: Path, tmp_path: Path
) -> None:
    warehouse.load_directory(tiny_batch)
    for report in (build_school_report(warehouse, "s1"), build_district_report(warehouse)):
        reasons = {s.key: s.unavailable for s in report.sections}
        assert all(reasons.values()), reasons
        assert reasons["gaps"] == "No assessment data in the warehouse for " + (
            "this school by this date." if report.kind == "school" else "this district by this date."
        )
        assert "No early-warning scores" in reasons["risk"]
        for suffix in (".html", ".pdf"):
            out = write_report(report, tmp_path / f"{report.kind}{suffix}")
            assert out.stat().st_size > 1000
    school = build_school_report(warehouse, "s1")
    assert school.narrative.startswith("Elm Elementary has no students enrolled on")


def test_cli_writes_the_report_and_exits_2_on_bad_input(built: Built, tmp_path: Path) -> None:
    runner = CliRunner()
    home = str(built.warehouse.settings.home)
    out = tmp_path / "school.html"
    result = runner.invoke(
        report_app, ["school", "--school", SCHOOL, "--out", str(out), "--home", home, "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["out"] == str(out)
    assert out.stat().st_size > 10_000
    assert [s["key"] for s in payload["sections"]] == [
        "risk",
        "abc",
        "gaps",
        "growth",
        "value_added",
        "trends",
    ]
    growth = next(s for s in payload["sections"] if s["key"] == "growth")
    assert not growth["available"]
    assert "200 students" in growth["unavailable"]

    bad: Callable[[list[str]], tuple[int, str]] = lambda args: (  # noqa: E731
        (r := runner.invoke(report_app, [*args, "--home", home])).exit_code,
        r.stderr,
    )
    code, err = bad(["school", "--school", "NOPE", "--out", str(tmp_path / "x.pdf")])
    assert code == 2
    assert err.startswith("Error: unknown school 'NOPE'")
    code, err = bad(["district", "--out", str(tmp_path / "x.docx")])
    assert code == 2
    assert "reports are written as .html or .pdf" in err
    code, err = bad(["district", "--district", "NOPE", "--out", str(tmp_path / "x.pdf")])
    assert code == 2
    assert "unknown district 'NOPE'" in err
    assert not (tmp_path / "x.pdf").exists()
