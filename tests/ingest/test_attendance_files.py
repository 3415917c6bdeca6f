"""Attendance and discipline files: vocabularies, student and school resolution, reruns, bad input."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.conftest import Rows, kill_when_marked, write_csv

from edsight.errors import InvalidInput
from edsight.ingest.attendance import (
    ingest_attendance,
    ingest_discipline,
    write_attendance_csv,
    write_discipline_csv,
)
from edsight.ingest.ids import edsight_id
from edsight.ingest.oneroster import ingest_oneroster, write_oneroster
from edsight.schema import WAREHOUSE_TABLES
from edsight.store.warehouse import LoadResult, Warehouse
from edsight.synth.district import generate_district

ROSTER = Path(__file__).resolve().parent.parent / "data" / "oneroster" / "v1p1"
S1 = edsight_id("oneroster", "organization", "s1")
S2 = edsight_id("oneroster", "organization", "s2")
ATTENDANCE = ["student_id", "school_id", "date", "status"]
DISCIPLINE = ["incident_id", "student_id", "school_id", "date", "behavior", "severity"]


def pid(user: str) -> str:
    return edsight_id("oneroster", "person", user)


def query(wh: Warehouse, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with wh.connect(read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def quarantine(wh: Warehouse) -> list[tuple[Any, ...]]:
    return query(
        wh,
        "SELECT source_file, row_number, column_name, reason FROM quarantine "
        "ORDER BY source_file, row_number",
    )


def reconciles(result: LoadResult) -> bool:
    reports = [*result.source_tables.values(), *result.tables.values()]
    return all(r.rows_read == r.rows_valid + r.rows_quarantined for r in reports) and (
        result.rows_read == result.rows_stored + result.rows_quarantined + result.unchanged
    )


def snapshot(wh: Warehouse) -> dict[str, str]:
    return {name: wh.checksum(name) for name in WAREHOUSE_TABLES}


@pytest.fixture
def roster(warehouse: Warehouse) -> Warehouse:
    """A warehouse holding the OneRoster fixture: students 100001-100005, schools s1 (0101), s2 (0201)."""
    ingest_oneroster(warehouse, ROSTER)
    return warehouse


def day(n: int) -> str:
    return (dt.date(2024, 9, 2) + dt.timedelta(days=n)).isoformat()


# -- attendance ------------------------------------------------------------------------


def test_edfi_and_edsight_statuses_map_and_presence_is_not_stored(roster: Warehouse, tmp_path: Path) -> None:
    rows: Rows = [
        {"student_id": "100001", "school_id": "s1", "date": day(1), "status": "Excused Absence"},
        {"student_id": "100001", "school_id": "0101", "date": day(2), "status": "unexcused absence"},
        {"student_id": "100002", "school_id": S1, "date": day(1), "status": "Tardy"},
        {"student_id": "100002", "school_id": "s1", "date": day(2), "status": "Early departure"},
        {"student_id": "100003", "school_id": "0201", "date": day(1), "status": "Partial"},
        {
            "student_id": "100003",
            "school_id": "s2",
            "date": day(2),
            "status": "uri://ed-fi.org/AttendanceEventCategoryDescriptor#Unexcused Absence",
        },
        {"student_id": "100004", "school_id": "s2", "date": day(1), "status": "absent_excused"},
        {"student_id": "100004", "school_id": "s2", "date": day(2), "status": "In Attendance"},
        {"student_id": "100005", "school_id": "s2", "date": day(2), "status": "PRESENT"},
    ]
    result = ingest_attendance(roster, write_csv(tmp_path / "attendance.csv", rows, ATTENDANCE))
    assert result.rows_quarantined == 0, result.problems
    assert result.rows_read == 9
    assert result.rows_stored == 7
    assert result.unchanged == 2  # the two presence rows, counted as skipped
    assert reconciles(result)
    assert any("2 presence row(s) not stored" in s for s in result.skipped)
    stored = query(roster, "SELECT person_id, school_id, date::VARCHAR, status FROM attendance ORDER BY ALL")
    assert stored == sorted(
        [
            (pid("st1"), S1, day(1), "absent_excused"),
            (pid("st1"), S1, day(2), "absent_unexcused"),
            (pid("st2"), S1, day(1), "tardy"),
            (pid("st2"), S1, day(2), "tardy"),  # early departure: attended part of the day
            (pid("st3"), S2, day(1), "tardy"),  # partial: attended part of the day
            (pid("st3"), S2, day(2), "absent_unexcused"),
            (pid("st4"), S2, day(1), "absent_excused"),
        ]
    )


def test_unknown_students_and_schools_are_quarantined_naming_the_row(
    roster: Warehouse, tmp_path: Path
) -> None:
    rows: Rows = [
        {"student_id": "100001", "school_id": "s1", "date": day(1), "status": "Tardy"},
        {"student_id": "999999", "school_id": "s1", "date": day(1), "status": "Tardy"},
        {"student_id": "100002", "school_id": "nowhere", "date": day(1), "status": "Tardy"},
        {"student_id": "E1001", "school_id": "s1", "date": day(1), "status": "Tardy"},  # a teacher's number
    ]
    result = ingest_attendance(roster, write_csv(tmp_path / "attendance.csv", rows, ATTENDANCE))
    assert reconciles(result)
    assert quarantine(roster) == [
        (
            "attendance.csv",
            2,
            "student_id",
            "attendance.csv: row 2, column 'student_id': no student in the warehouse has this student "
            "number (person.local_id); load the roster first",
        ),
        (
            "attendance.csv",
            3,
            "school_id",
            "attendance.csv: row 3, column 'school_id': no organization has this id (an edsight org_id, "
            "a OneRoster sourcedId or a school code)",
        ),
        (
            "attendance.csv",
            4,
            "student_id",
            "attendance.csv: row 4, column 'student_id': no student in the warehouse has this student "
            "number (person.local_id); load the roster first",
        ),
    ]
    assert "999999" not in " ".join(r[3] for r in quarantine(roster))  # student numbers are not echoed
    assert result.rows_stored == 1


def test_an_ambiguous_student_number_is_quarantined(
    warehouse: Warehouse, make_batch: Any, tmp_path: Path
) -> None:
    people = [
        {"person_id": p, "role": "student", "local_id": "42", "directory_opt_out": "false"}
        for p in ("a", "b")
    ]
    org = [{"org_id": "sch", "name": "School", "org_type": "school"}]
    warehouse.load_directory(make_batch("people", organization=org, person=people))
    rows: Rows = [{"student_id": "42", "school_id": "sch", "date": day(1), "status": "Tardy"}]
    ingest_attendance(warehouse, write_csv(tmp_path / "a.csv", rows, ATTENDANCE))
    assert [r[3] for r in quarantine(warehouse)] == [
        "a.csv: row 1, column 'student_id': several students in the warehouse have this student number "
        "(person.local_id)"
    ]


def test_a_presence_row_deletes_the_stored_event_of_that_day(roster: Warehouse, tmp_path: Path) -> None:
    first: Rows = [
        {"student_id": "100001", "school_id": "s1", "date": day(1), "status": "Unexcused Absence"},
        {"student_id": "100001", "school_id": "s1", "date": day(2), "status": "Tardy"},
    ]
    ingest_attendance(roster, write_csv(tmp_path / "monday.csv", first, ATTENDANCE))
    corrected: Rows = [{"student_id": "100001", "school_id": "s1", "date": day(1), "status": "In Attendance"}]
    result = ingest_attendance(roster, write_csv(tmp_path / "correction.csv", corrected, ATTENDANCE))
    assert result.deleted == {"attendance": 1}
    assert query(roster, "SELECT date::VARCHAR, status FROM attendance") == [(day(2), "tardy")]


def test_a_rerun_stores_only_what_changed(roster: Warehouse, tmp_path: Path) -> None:
    base: Rows = [
        {"student_id": f"10000{i}", "school_id": "s2", "date": day(d), "status": "Excused Absence"}
        for i in (3, 4, 5)
        for d in range(5)
    ]
    path = write_csv(tmp_path / "ytd.csv", base, ATTENDANCE)
    first = ingest_attendance(roster, path)
    assert first.rows_stored == 15
    after = snapshot(roster)
    assert ingest_attendance(roster, path).already_loaded
    assert snapshot(roster) == after
    # The next night's year-to-date file: one new day, one changed status, the rest as before.
    tomorrow: Rows = [
        *base[:-1],
        dict(base[-1], status="Tardy"),
        {"student_id": "100003", "school_id": "s2", "date": day(9), "status": "Tardy"},
    ]
    result = ingest_attendance(roster, write_csv(tmp_path / "ytd2.csv", tomorrow, ATTENDANCE))
    assert (result.rows_read, result.rows_stored, result.unchanged) == (16, 2, 14)
    assert reconciles(result)
    assert query(roster, "SELECT count(*), count(*) FILTER (status = 'tardy') FROM attendance") == [(16, 2)]


def test_bad_attendance_rows_are_quarantined_with_file_row_and_column(
    roster: Warehouse, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "attendance.csv",
        [
            {"student_id": "100001", "school_id": "s1", "date": day(1), "status": "Tardy"},
            {"student_id": "100001", "school_id": "s1", "date": "the 5th", "status": "Tardy"},
            {"student_id": "100002", "school_id": "s1", "date": day(1), "status": "sick"},
            {"student_id": "100001", "school_id": "s1", "date": day(1), "status": "Excused Absence"},
        ],
        ATTENDANCE,
    )
    with path.open("a") as fh:
        fh.write("100003,s2\n")  # cut short
    result = ingest_attendance(roster, path)
    assert reconciles(result)
    got = [(n, c, r) for _, n, c, r in quarantine(roster)]
    assert [(n, c) for n, c, _ in got] == [(2, "date"), (3, "status"), (4, "student_id, date"), (5, None)]
    assert got[0][2] == "attendance.csv: row 2, column 'date': expected a date (YYYY-MM-DD), got the 5th"
    assert got[1][2].startswith("attendance.csv: row 3, column 'status': expected one of absent_excused, ")
    assert got[1][2].endswith("in attendance, got sick")
    assert got[2][2].endswith("duplicate key (student_id, date): same key as attendance.csv row 1")
    assert got[3][2] == "attendance.csv: row 5, row has 2 fields, expected 4"
    assert result.rows_stored == 1


def test_encodings_and_missing_columns(roster: Warehouse, tmp_path: Path) -> None:
    rows: Rows = [{"student_id": "100001", "school_id": "s1", "date": day(1), "status": "Tardy"}]
    bom = write_csv(tmp_path / "bom.csv", rows, ATTENDANCE)
    bom.write_bytes(b"\xef\xbb\xbf" + bom.read_bytes())
    assert ingest_attendance(roster, bom).rows_stored == 1
    latin = tmp_path / "latin.csv"
    latin.write_bytes(
        "student_id,school_id,date,status,note\n100002,s1,2024-09-03,Tardy,élève\n".encode("latin-1")
    )
    before = snapshot(roster)
    with pytest.raises(InvalidInput, match=r"latin\.csv: not valid utf-8 text"):
        ingest_attendance(roster, latin)
    assert snapshot(roster) == before
    loaded = ingest_attendance(roster, latin, encoding="latin-1")
    assert loaded.rows_stored == 1
    assert any("'note' are not part of the attendance layout" in s for s in loaded.skipped)
    no_status = write_csv(tmp_path / "no_status.csv", rows, ["student_id", "school_id", "date"])
    result = ingest_attendance(roster, no_status)
    assert result.rows_stored == 0
    assert "missing required column(s) 'status'" in quarantine(roster)[-1][3]
    with pytest.raises(InvalidInput, match="no such file"):
        ingest_attendance(roster, tmp_path / "nope.csv")


def test_a_typed_parquet_file_loads_like_csv(roster: Warehouse, tmp_path: Path) -> None:
    table = pa.table(
        {
            "Student_ID": pa.array([100001, 100002], pa.int64()),  # typed, and the header in another case
            "school_id": ["s1", "0101"],
            "date": pa.array([dt.date(2024, 9, 3), dt.date(2024, 9, 4)], pa.date32()),
            "status": pa.array(["Tardy", "Partial"]).dictionary_encode(),
        }
    )
    pq.write_table(table, tmp_path / "attendance.parquet")
    result = ingest_attendance(roster, tmp_path / "attendance.parquet")
    assert result.problems == []
    assert query(roster, "SELECT person_id, date::VARCHAR, status FROM attendance ORDER BY ALL") == [
        (pid("st1"), "2024-09-03", "tardy"),
        (pid("st2"), "2024-09-04", "tardy"),
    ]


# -- discipline ----------------------------------------------------------------------


def test_discipline_behaviors_map_to_severity(roster: Warehouse, tmp_path: Path) -> None:
    rows: Rows = [
        {
            "incident_id": "I1",
            "student_id": "100003",
            "school_id": "s2",
            "date": day(3),
            "behavior": "State Offense",
        },
        {"incident_id": "I1", "student_id": "100004", "school_id": "s2", "date": day(3), "behavior": "Other"},
        {
            "incident_id": "I2",
            "student_id": "100004",
            "school_id": "s2",
            "date": day(4),
            "behavior": "School Violation",
        },
        {
            "incident_id": "I3",
            "student_id": "100005",
            "school_id": "0201",
            "date": day(4),
            "behavior": "uri://ed-fi.org/BehaviorDescriptor#School Code of Conduct",
        },
        {
            "incident_id": "I4",
            "student_id": "100005",
            "school_id": "s2",
            "date": day(5),
            "behavior": "Other",
            "severity": "major",  # edsight's severity wins
        },
        {"incident_id": "I5", "student_id": "100001", "school_id": "s1", "date": day(5)},  # neither
        {"incident_id": "I6", "student_id": "31337", "school_id": "s1", "date": day(5), "severity": "minor"},
    ]
    result = ingest_discipline(roster, write_csv(tmp_path / "discipline.csv", rows, DISCIPLINE))
    assert reconciles(result)
    assert query(roster, "SELECT incident_id, person_id, severity FROM discipline ORDER BY ALL") == sorted(
        [
            ("I1", pid("st3"), "state_offense"),
            ("I1", pid("st4"), "minor"),
            ("I2", pid("st4"), "major"),
            ("I3", pid("st5"), "minor"),
            ("I4", pid("st5"), "major"),
        ]
    )
    assert [(n, c) for _, n, c, _ in quarantine(roster)] == [(6, "behavior"), (7, "student_id")]
    assert "give a behavior (Ed-Fi BehaviorDescriptor) or a severity" in quarantine(roster)[0][3]
    again = ingest_discipline(roster, write_csv(tmp_path / "discipline2.csv", list(rows[:5]), DISCIPLINE))
    assert (again.rows_stored, again.unchanged) == (0, 5)


# -- end to end, crashes ------------------------------------------------------------------


def test_a_generated_districts_attendance_and_discipline_come_back(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    district = generate_district(300, n_years=1, n_schools=3, seed=9)
    ingest_oneroster(warehouse, write_oneroster(district.tables, tmp_path / "roster"))
    n = write_attendance_csv(district.tables, tmp_path / "attendance.csv")
    result = ingest_attendance(warehouse, tmp_path / "attendance.csv")
    assert result.rows_quarantined == 0, result.problems
    assert result.rows_stored == n == len(district.tables["attendance"])
    people = district.tables["person"][["person_id", "local_id"]]
    expected = district.tables["attendance"].merge(people, on="person_id")
    want = {(r.local_id, r.school_id, r.date, r.status) for r in expected.itertuples()}
    got = query(
        warehouse,
        "SELECT p.local_id, o.source_id, a.date, a.status FROM attendance a JOIN person p USING (person_id) "
        "JOIN id_map o ON o.edsight_id = a.school_id AND o.source_system = 'oneroster'",
    )
    assert set(got) == want
    m = write_discipline_csv(district.tables, tmp_path / "discipline.csv")
    disc = ingest_discipline(warehouse, tmp_path / "discipline.csv")
    assert disc.rows_stored == m == len(district.tables["discipline"])
    severities = district.tables["discipline"]["severity"].value_counts().to_dict()
    assert dict(query(warehouse, "SELECT severity, count(*) FROM discipline GROUP BY 1")) == severities


_LOADER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from edsight.config import Settings
    from edsight.ingest.attendance import ingest_attendance
    from edsight.store.warehouse import Warehouse

    home, source, marker = sys.argv[1:4]

    def progress(step):
        if step == "applied attendance":
            Path(marker).write_text(step)
            time.sleep(600)

    ingest_attendance(Warehouse(Settings(home=Path(home))), Path(source), progress=progress)
    """
)


def test_killing_an_attendance_load_then_rerunning_it(roster: Warehouse, tmp_path: Path) -> None:
    rows: Rows = [
        {"student_id": f"10000{i}", "school_id": "s2", "date": day(d), "status": "Tardy"}
        for i in (3, 4, 5)
        for d in range(20)
    ]
    path = write_csv(tmp_path / "attendance.csv", rows, ATTENDANCE)
    before = snapshot(roster)
    marker = tmp_path / "marker"
    kill_when_marked(_LOADER, str(roster.settings.home), str(path), str(marker), marker=marker)
    assert snapshot(roster) == before
    result = ingest_attendance(roster, path)
    assert (result.rows_stored, result.unchanged, result.rows_quarantined) == (60, 0, 0)
