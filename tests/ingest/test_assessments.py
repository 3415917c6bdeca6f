"""NWEA MAP Growth and state test files: mapping to assessment_result, student matching,
bad input in quarantine with file/row/column reasons, idempotent reloads."""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from tests.conftest import Rows

from edsight.errors import InvalidInput
from edsight.ingest.assessments import (
    ingest_map,
    ingest_state_tests,
    load_state_test_mapping,
    state_test_long_form,
)
from edsight.store.warehouse import LoadResult, Warehouse

DATA = Path(__file__).parent.parent / "data"
MAP = DATA / "map"
STATE = DATA / "state_tests"

ROSTER: Rows = [
    *(
        {
            "person_id": f"p{i}",
            "role": "student",
            "local_id": str(1000 + i),
            "state_id": f"900000000{i}",
            "directory_opt_out": "false",
        }
        for i in range(1, 7)
    ),
    # Two students share a student number (a data error in the SIS): never guess between them.
    {"person_id": "p7", "role": "student", "local_id": "1007", "directory_opt_out": "false"},
    {"person_id": "p8", "role": "student", "local_id": "1007", "directory_opt_out": "false"},
    # A teacher's staff number collides with a MAP StudentID: only students are matched.
    {"person_id": "t1", "role": "teacher", "local_id": "2001", "directory_opt_out": "false"},
]


@pytest.fixture
def rostered(warehouse: Warehouse, make_batch: Callable[..., Path]) -> Warehouse:
    warehouse.load_directory(make_batch("roster", person=ROSTER))
    return warehouse


def rows(wh: Warehouse, sql: str) -> list[tuple[object, ...]]:
    with wh.connect(read_only=True) as con:
        return con.execute(sql).fetchall()


def results(wh: Warehouse, assessment: str) -> list[tuple[object, ...]]:
    return rows(
        wh,
        "SELECT person_id, subject, school_year, grade_level, test_date, scale_score, sem, perf_level "
        f"FROM assessment_result WHERE assessment = '{assessment}' ORDER BY ALL",
    )


def quarantined(wh: Warehouse) -> list[tuple[str, int, str]]:
    return [
        (str(r[0]), int(r[1]), str(r[2]))
        for r in rows(
            wh, "SELECT source_file, row_number, reason FROM quarantine ORDER BY source_file, row_number"
        )
    ]


def reconciles(result: LoadResult, source_table: str) -> None:
    """Every source row is stored or quarantined, and every mapped row too."""
    src = result.source_tables[source_table]
    assert src.rows_read == src.rows_valid + src.rows_quarantined
    ar = result.tables["assessment_result"]
    assert ar.rows_read == ar.rows_valid + ar.rows_quarantined


# -- MAP Growth ------------------------------------------------------------------------------------

CURRENT = [
    ("p1", "math", 2023, 5, date(2023, 9, 12), 201.0, 3.2, 3),
    ("p1", "math", 2023, 5, date(2024, 1, 10), 207.0, 3.1, 3),
    ("p1", "reading", 2023, 5, date(2023, 9, 13), 195.0, 3.4, 2),
    ("p2", "language", 2023, 7, date(2023, 9, 13), 205.0, 3.1, 4),
    ("p2", "math", 2023, 7, date(2023, 9, 12), 200.0, 3.2, 2),
    ("p2", "math", 2023, 7, date(2024, 5, 2), 215.0, 3.3, 1),
    ("p3", "science", 2023, 0, date(2023, 9, 14), 199.0, 3.0, 5),
    ("p4", "math", 2023, 6, date(2023, 9, 12), 190.0, 3.5, 1),
]


def test_map_export_maps_each_test_event_to_one_result(rostered: Warehouse) -> None:
    result = ingest_map(rostered, MAP / "current")
    assert results(rostered, "nwea_map") == CURRENT
    # StudentID 5555 is not a student number, but its Student_StateID is p4's state id.
    assert rows(
        rostered, "SELECT source_id, edsight_id FROM id_map WHERE source_system = 'nwea_map' ORDER BY 1"
    ) == [
        ("1001", "p1"),
        ("1002", "p2"),
        ("1003", "p3"),
        ("5555", "p4"),
    ]
    assert result.skipped == [
        "ClassAssignments.csv: not used (class, program and accommodation files come from the SIS)"
    ]
    reasons = quarantined(rostered)
    assert [(f, r) for f, r, _ in reasons] == [("AssessmentResults.csv", n) for n in (8, 9, 10, 11)]
    assert reasons[0][2] == (
        "AssessmentResults.csv: row 8, column 'StudentID': no student in the warehouse has this SIS "
        "student number (nor this Student_StateID); load the SIS roster first"
    )
    assert reasons[1][2].endswith("column 'StudentID': matches more than one student in the warehouse")
    assert "no student in the warehouse" in reasons[2][2]  # a teacher's number is not a student's
    assert reasons[3][2] == (
        "AssessmentResults.csv: row 11, duplicate test event (StudentID, subject, TestStartDate): "
        "row 12 is kept (GrowthMeasureYN)"
    )
    assert result.source_tables["map_results"].rows_read == 12
    assert result.source_tables["map_results"].rows_quarantined == 4
    assert result.source_tables["map_students"].rows_valid == 6
    assert result.tables["assessment_result"].rows_valid == 8
    reconciles(result, "map_results")


def test_quarantine_keeps_the_row_but_reasons_never_echo_student_ids(rostered: Warehouse) -> None:
    ingest_map(rostered, MAP / "current")
    reasons = " ".join(r for _, _, r in quarantined(rostered))
    assert "9999" not in reasons
    assert "1007" not in reasons
    (record,) = rows(rostered, "SELECT record FROM quarantine WHERE row_number = 8")
    assert "9999" in str(record[0])  # the data steward can still see which row it was


def test_legacy_headers_and_spellings_give_the_same_results(rostered: Warehouse) -> None:
    """MeasurementScale/Discipline/RITtoReading*, lower-case headers, FalltoFall, M/D/YYYY dates."""
    result = ingest_map(rostered, MAP / "legacy")
    expected = [(*r[:3], None, *r[4:]) for r in CURRENT[:6] if r[0] != "p2" or r[4] != date(2023, 9, 12)]
    expected.append(("p3", "science", 2023, None, date(2023, 9, 14), 199.0, 3.0, 5))
    assert results(rostered, "nwea_map") == sorted(expected, key=str)
    assert result.source_tables["map_results"].rows_quarantined == 0
    assert result.rows_quarantined == 0


def test_legacy_growth_headers_reach_their_declared_columns(rostered: Warehouse, tmp_path: Path) -> None:
    text = (MAP / "legacy" / "AssessmentResults.csv").read_text().splitlines()
    bad = text[5].replace(",6,Yes*,", ",6,Maybe,")  # FalltoWinterMetProjectedGrowth
    (tmp_path / "AssessmentResults.csv").write_text("\n".join([text[0], bad]) + "\n")
    ingest_map(rostered, tmp_path / "AssessmentResults.csv")
    assert [r for _, _, r in quarantined(rostered)] == [
        "AssessmentResults.csv: row 1, column 'FallToWinterMetProjectedGrowth': expected one of Yes, No, "
        "Yes*, No*, got Maybe"
    ]


def test_combo_file_alone_carries_the_grade(rostered: Warehouse) -> None:
    ingest_map(rostered, MAP / "combo" / "ComboStudentAssessment.csv")
    assert results(rostered, "nwea_map") == [
        ("p1", "math", 2023, 5, date(2023, 9, 12), 201.0, 3.2, 3),
        ("p3", "science", 2023, 0, date(2023, 9, 14), 199.0, 3.0, 5),
    ]


def test_map_reload_is_idempotent_and_picks_up_students_rostered_later(
    rostered: Warehouse, make_batch: Callable[..., Path]
) -> None:
    first = ingest_map(rostered, MAP / "current")
    before = rostered.checksum("assessment_result")
    again = ingest_map(rostered, MAP / "current")
    assert again.already_loaded
    assert again.batch_id == first.batch_id
    forced = ingest_map(rostered, MAP / "current", force=True)
    assert not forced.already_loaded
    assert rostered.checksum("assessment_result") == before
    assert rows(rostered, "SELECT count(*) FROM quarantine")[0][0] == 4  # keyed by batch: not doubled
    # Student 9999 joins the roster: the same file now resolves differently, so it loads again.
    newcomer = {"person_id": "p9", "role": "student", "local_id": "9999", "directory_opt_out": "false"}
    rostered.load_directory(make_batch("late", person=[newcomer]))
    later = ingest_map(rostered, MAP / "current")
    assert not later.already_loaded
    assert later.batch_id != first.batch_id
    assert ("p9", "math", 2023, None, date(2023, 9, 12), 210.0, 3.2, 4) in results(rostered, "nwea_map")
    assert len(results(rostered, "nwea_map")) == len(CURRENT) + 1


def _current_rows() -> tuple[list[str], list[list[str]]]:
    text = (MAP / "current" / "AssessmentResults.csv").read_text().splitlines()
    parsed = list(csv.reader(text))
    return parsed[0], parsed[1:7]


def _write(path: Path, header: list[str], body: list[list[str]], encoding: str = "utf-8") -> Path:
    buffer = io.StringIO()
    csv.writer(buffer).writerows([header, *body])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def test_wrong_types_bad_terms_and_unknown_subjects_are_quarantined(
    rostered: Warehouse, tmp_path: Path
) -> None:
    header, body = _current_rows()
    col = {name: i for i, name in enumerate(header)}
    bad = [list(r) for r in body]
    bad[0][col["TestRITScore"]] = "abc"
    bad[1][col["TestStartDate"]] = "13/45/2023"
    bad[2][col["TestPercentile"]] = "55.5"
    bad[3][col["AchievementQuintile"]] = "Great"
    bad[4][col["TermName"]] = "Autumn 2023"
    bad[5][col["Course"]], bad[5][col["Subject"]] = "Art K-12", "Art"
    result = ingest_map(rostered, _write(tmp_path / "AssessmentResults.csv", header, bad))
    assert [r for _, _, r in quarantined(rostered)] == [
        "AssessmentResults.csv: row 1, column 'TestRITScore': expected a number, got abc",
        "AssessmentResults.csv: row 2, column 'TestStartDate': expected a date (YYYY-MM-DD), got 13/45/2023",
        "AssessmentResults.csv: row 3, column 'TestPercentile': expected an integer, got 55.5",
        "AssessmentResults.csv: row 4, column 'AchievementQuintile': expected one of Low, LoAvg, Avg, HiAvg, "
        "High, got Great",
        "AssessmentResults.csv: row 5, column 'TermName': expected '<Fall|Winter|Spring|Summer> YYYY-YYYY' "
        "(e.g. 'Fall 2023-2024'), got 'Autumn 2023'",
        "AssessmentResults.csv: row 6, columns 'Course'/'Subject': not a MAP Growth subject (math, reading, "
        "language usage, science), got 'Art K-12 / Art'",
    ]
    assert result.rows_stored == 0
    assert results(rostered, "nwea_map") == []
    reconciles(result, "map_results")


def test_malformed_rows_and_missing_required_columns(rostered: Warehouse, tmp_path: Path) -> None:
    header, body = _current_rows()
    path = _write(tmp_path / "a" / "AssessmentResults.csv", header, body)
    with path.open("a") as fh:
        fh.write('"Fall 2023-2024","too","few"\n')
    result = ingest_map(rostered, tmp_path / "a")
    assert result.tables["assessment_result"].rows_valid == 6
    assert (
        quarantined(rostered)[-1][2]
        == f"AssessmentResults.csv: row 7, row has 3 fields, expected {len(header)}"
    )
    reconciles(result, "map_results")

    keep = [i for i, name in enumerate(header) if name != "TestRITScore"]
    path = _write(
        tmp_path / "b" / "AssessmentResults.csv",
        [header[i] for i in keep],
        [[r[i] for i in keep] for r in body],
    )
    result = ingest_map(rostered, tmp_path / "b")
    assert result.source_tables["map_results"].rows_quarantined == 6
    assert result.source_tables["map_results"].problems == [
        "AssessmentResults.csv: missing required column(s) 'TestRITScore'"
    ]


def test_encodings_bom_and_latin1(rostered: Warehouse, tmp_path: Path) -> None:
    header, body = _current_rows()
    body = [list(r) for r in body]
    body[0][header.index("SchoolName")] = "Escuela Peñasco"
    _write(tmp_path / "bom" / "AssessmentResults.csv", header, body, encoding="utf-8-sig")
    assert ingest_map(rostered, tmp_path / "bom").tables["assessment_result"].rows_valid == 6

    body[0][header.index("SchoolName")] = "Escuela Ñandú"  # new content: not the batch loaded above
    latin = _write(tmp_path / "latin" / "AssessmentResults.csv", header, body, encoding="latin-1")
    with pytest.raises(
        InvalidInput, match=r"AssessmentResults.csv: not valid utf-8 text.*--encoding latin-1"
    ):
        ingest_map(rostered, latin)
    assert ingest_map(rostered, latin, encoding="latin-1").tables["assessment_result"].rows_valid == 6


def test_a_folder_without_results_is_an_input_error(rostered: Warehouse, tmp_path: Path) -> None:
    shutil.copy(MAP / "current" / "StudentsBySchool.csv", tmp_path / "StudentsBySchool.csv")
    with pytest.raises(InvalidInput, match=r"no AssessmentResults\.csv or ComboStudentAssessment\.csv"):
        ingest_map(rostered, tmp_path)
    with pytest.raises(InvalidInput, match="no such file or folder"):
        ingest_map(rostered, tmp_path / "missing")


# -- state tests -------------------------------------------------------------------------------------


def test_state_long_form_follows_the_yearly_column_maps() -> None:
    """WI Forward-like: 2018 and 2019 files with different columns, levels as codes then labels."""
    long = state_test_long_form(STATE / "wi_forward", STATE / "wi_forward.yaml").to_pylist()
    seen = {(r["__file"], r["student_id"]): r for r in long}
    assert len(long) == 11  # 3 students x 2 subjects x 2 years, one math score missing in 2018
    ela18 = seen[("forward_2018.csv [ela]", "9000000002")]
    assert (ela18["school_year"], ela18["grade_level"], ela18["test_date"]) == (2017, 3, date(2018, 4, 15))
    assert (ela18["scale_score"], ela18["sem"], ela18["perf_level"]) == (2505.0, None, 3)
    assert (ela18["perf_level_label"], ela18["proficient_flag"]) == ("Proficient", True)
    math19 = seen[("forward_2019.csv [math]", "9000000001")]
    assert (math19["scale_score"], math19["sem"], math19["perf_level"]) == (2530.0, 19.0, 3)
    assert math19["perf_level_label"] == "Proficient"  # 'proficient' in the file: case ignored
    assert seen[("forward_2019.csv [math]", "9000000002")]["proficient_flag"] is False
    assert ("forward_2018.csv [math]", "9000000003") not in seen  # not tested in math that year


def test_state_files_load_by_state_id(rostered: Warehouse) -> None:
    result = ingest_state_tests(rostered, STATE / "wi_forward", mapping=STATE / "wi_forward.yaml")
    stored = results(rostered, "state_test")
    assert len(stored) == 11
    assert ("p1", "ela", 2018, 4, date(2019, 4, 15), 2480.0, 21.0, 2) in stored
    assert ("p3", "ela", 2017, 4, date(2018, 4, 15), 2602.0, None, 4) in stored
    assert result.source_tables["state_test"].rows_read == 6
    assert rows(rostered, "SELECT count(*) FROM id_map WHERE source_system = 'state_test'") == [(3,)]
    reconciles(result, "state_test")


def test_state_file_with_labels_dates_and_local_ids(rostered: Warehouse) -> None:
    """SC READY-like: one year as a constant, labels as levels, a label column, US dates."""
    ingest_state_tests(rostered, STATE / "sc_ready" / "ready_2023.csv", mapping=STATE / "sc_ready.yaml")
    assert results(rostered, "state_test") == [
        ("p4", "ela", 2022, 5, date(2023, 5, 2), 612.0, 11.0, 3),
        ("p4", "math", 2022, 5, date(2023, 5, 2), 598.0, 12.0, 2),
        ("p5", "ela", 2022, 6, date(2023, 5, 3), 560.0, 13.0, 1),
        ("p5", "math", 2022, 6, date(2023, 5, 3), 640.0, 10.0, 4),
        ("p6", "math", 2022, 6, date(2023, 5, 3), 655.0, 9.0, 4),
    ]
    long = state_test_long_form(STATE / "sc_ready", STATE / "sc_ready.yaml").to_pylist()
    labels = {(r["student_id"], r["subject"]): (r["perf_level_label"], r["proficient_flag"]) for r in long}
    assert labels[("1004", "math")] == ("Approaching", False)  # the file's own label column wins
    assert labels[("1005", "ela")] == ("Does Not Meet Expectations", False)


def test_state_reload_is_idempotent(rostered: Warehouse) -> None:
    first = ingest_state_tests(rostered, STATE / "wi_forward", mapping=STATE / "wi_forward.yaml")
    before = rostered.checksum("assessment_result")
    assert ingest_state_tests(
        rostered, STATE / "wi_forward", mapping=STATE / "wi_forward.yaml"
    ).already_loaded
    forced = ingest_state_tests(rostered, STATE / "wi_forward", mapping=STATE / "wi_forward.yaml", force=True)
    assert forced.batch_id == first.batch_id
    assert rostered.checksum("assessment_result") == before


WI_HEADER = (
    "TestYear,WISEID,Grade,Scale_Score_ELA,SEM_ELA,ELA_Performance_Level,"
    "Scale_Score_Math,SEM_Math,Math_Performance_Level"
)


def test_state_bad_rows_are_quarantined_with_the_files_own_columns(
    rostered: Warehouse, tmp_path: Path
) -> None:
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "forward_2019.csv").write_text(
        f"{WI_HEADER}\n"
        "2019,9000000001,04,twelve,21,Basic,2530,19,Proficient\n"  # 1: bad scale score
        "2019,9000000002,04,2575,20,Excellent,2450,22,Basic\n"  # 2: unknown level
        "2019,9000000099,04,2575,20,Basic,2450,22,Basic\n"  # 3: unknown student
        "2019,9000000003,05,2650,25,Advanced,2601,18,Advanced\n"  # 4: fine
        "2019,9000000003,05,2650,25,Advanced,2601,18,Advanced\n"  # 5: same student and year again
        "2019-20,9000000004,06,2700,25,Advanced,,,\n"  # 6: fine, year written as a school year
    )
    result = ingest_state_tests(rostered, tmp_path / "f", mapping=STATE / "wi_forward.yaml")
    assert [r for _, _, r in quarantined(rostered)] == [
        "forward_2019.csv: row 1, column 'Scale_Score_ELA': expected a number, got twelve",
        "forward_2019.csv: row 2, column 'ELA_Performance_Level': expected one of 1, 2, 3, 4, Below Basic, "
        "Basic, Proficient, Advanced, got Excellent",
        "forward_2019.csv: row 3, column 'WISEID': no student in the warehouse has this state id; "
        "load the SIS roster first",
        "forward_2019.csv: row 5, duplicate key (WISEID, TestYear): same key as forward_2019.csv row 4",
    ]
    assert results(rostered, "state_test") == [
        ("p3", "ela", 2018, 5, date(2019, 4, 15), 2650.0, 25.0, 4),
        ("p3", "math", 2018, 5, date(2019, 4, 15), 2601.0, 18.0, 4),
        ("p4", "ela", 2019, 6, date(2020, 4, 15), 2700.0, 25.0, 4),
    ]
    reconciles(result, "state_test")


def test_state_rows_whose_year_the_mapping_cannot_read(rostered: Warehouse, tmp_path: Path) -> None:
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "forward.csv").write_text(
        "TestYear,WISEID,Grade,Scale_Score_ELA,ELA_Performance_Level,Scale_Score_Math,SEM_Math,Math_Performance_Level\n"
        "2019,9000000001,04,2480,Basic,2530,19,Proficient\n"
    )
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        (STATE / "wi_forward.yaml")
        .read_text()
        .replace("- max_year: 2018", "- min_year: 2016\n        max_year: 2018")
    )
    (tmp_path / "f" / "old.csv").write_text(
        "TestYear,WISEID,Grade,ELASS,ELALev,MathSS,MathLev\n2015,9000000001,03,2400,2,2400,2\n"
    )
    ingest_state_tests(rostered, tmp_path / "f", mapping=mapping)
    assert [r for _, _, r in quarantined(rostered)] == [
        "forward.csv: row 1, the mapping reads column 'SEM_ELA' for ela in 2019, which this file lacks",
        "old.csv: row 1, no subject of the mapping covers test year 2015 (see min_year/max_year)",
    ]


ELA = "[{subject: ela, columns: [{scale_score: S}]}]"


def _spec(
    *,
    student: str = "ID",
    year: str = "{column: Y}",
    day: str = "'04-15'",
    subjects: str = ELA,
    extra: str = "",
) -> str:
    return (
        f"name: x\nstudent: {{column: {student}}}\nyear: {year}\ntest_date: {{month_day: {day}}}\n"
        f"subjects: {subjects}\n{extra}"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_spec(extra="colour: blue\n"), "colour: Extra inputs are not permitted"),
        (
            _spec(year="{value: 2024, column: Y}"),
            "year: Value error, give exactly one of 'column' and 'value'",
        ),
        (
            _spec(
                subjects="[{subject: ela, columns: "
                "[{max_year: 2019, scale_score: S}, {min_year: 2019, scale_score: T}]}]"
            ),
            "subjects.0: Value error, column maps overlap in year 2019",
        ),
        (
            _spec(
                subjects="[{subject: ela, perf_levels: {1: Low, 2: High}, proficient_level: 3, "
                "columns: [{scale_score: S}]}]"
            ),
            "proficient_level 3 is not one of perf_levels",
        ),
        (
            _spec(subjects="[{subject: ela, columns: [{scale_score: ID}]}]"),
            "column 'ID' is used both as student id and as scale score",
        ),
        (_spec(student="'I\"D'"), "student.column: String should match pattern"),
        (_spec(day="'13-45'"), "test_date.month_day: String should match pattern"),
        ("name: [unclosed\n", "not valid YAML (line 2)"),
        ("- a list\n", "a mapping must be a YAML dictionary"),
    ],
)
def test_mapping_problems_are_clear_input_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=r"^mapping\.yaml: ") as info:
        load_state_test_mapping(path)
    assert message in str(info.value)


def test_shipped_mappings_are_valid() -> None:
    for name in ("wi_forward.yaml", "sc_ready.yaml"):
        spec = load_state_test_mapping(STATE / name)
        assert {s.subject for s in spec.subjects} == {"ela", "math"}


def test_map_percentile_and_growth_windows_are_stored(rostered: Warehouse) -> None:
    ingest_map(rostered, MAP / "current")
    with rostered.connect(read_only=True) as con:
        percentile = con.execute(
            "SELECT percentile FROM assessment_result WHERE assessment = 'nwea_map' "
            "AND scale_score = 201 AND subject = 'math'"
        ).fetchall()
        growth = con.execute(
            "SELECT growth_window, projected_growth, typical_growth FROM assessment_growth g "
            "JOIN assessment_result r USING (person_id, assessment, subject, test_date) "
            "WHERE r.scale_score = 201 AND r.subject = 'math' ORDER BY growth_window"
        ).fetchall()
    assert percentile == [(55.0,)]
    assert growth == [("FallToFall", 9.0, None), ("FallToSpring", 8.0, 8.5)]
