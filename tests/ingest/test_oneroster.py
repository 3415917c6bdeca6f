"""OneRoster 1.1/1.2 CSV packages: mapping, versions, delta and cursors, bad input, crashes."""

from __future__ import annotations

import csv
import datetime as dt
import io
import shutil
import textwrap
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Rows, kill_when_marked, write_csv

from edsight.config import Settings
from edsight.errors import InvalidInput
from edsight.ingest import _oneroster_package
from edsight.ingest.ids import edsight_id
from edsight.ingest.oneroster import ingest_oneroster, read_manifest, write_oneroster
from edsight.schema import CANONICAL, WAREHOUSE_TABLES
from edsight.store.warehouse import LoadResult, Warehouse
from edsight.synth.district import generate_district

DATA = Path(__file__).resolve().parent.parent / "data" / "oneroster"
LATER = "2024-09-15T08:30:00.000Z"


# -- helpers --------------------------------------------------------------------


def package(tmp_path: Path, version: str = "v1p1", name: str = "pkg") -> Path:
    """A writable copy of a fixture package."""
    return Path(shutil.copytree(DATA / version, tmp_path / name))


def read_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


def edit(path: Path, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
    """Rewrite a CSV file through ``change`` (keeps the header)."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh))
    write_csv(path, change(read_rows(path)), header)


def delta(tmp_path: Path, name: str, files: dict[str, Rows], version: str = "1.1") -> Path:
    """A delta package holding only ``files`` (rows as dicts; header from the fixture)."""
    folder = tmp_path / name
    folder.mkdir()
    with (folder / "manifest.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerows(
            [["propertyName", "value"], ["manifest.version", "1.0"], ["oneroster.version", version]]
        )
        for file in (
            "orgs",
            "academicSessions",
            "courses",
            "classes",
            "users",
            "demographics",
            "enrollments",
        ):
            writer.writerow([f"file.{file}", "delta" if file in files else "absent"])
        writer.writerow(["source.systemCode", "lakeside"])
    source = DATA / ("v1p1" if version == "1.1" else "v1p2")
    for file, rows in files.items():
        with (source / f"{file}.csv").open(newline="") as fh:
            header = next(csv.reader(fh))
        write_csv(folder / f"{file}.csv", rows, header)
    return folder


def zip_folder(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, path.name)
    return out


def query(wh: Warehouse, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with wh.connect(read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def quarantine(wh: Warehouse) -> list[tuple[str, str, int, str | None, str]]:
    return query(
        wh,
        "SELECT table_name, source_file, row_number, column_name, reason FROM quarantine "
        "ORDER BY table_name, source_file, row_number",
    )


def pid(user: str) -> str:
    return edsight_id("oneroster", "person", user)


def snapshot(wh: Warehouse) -> dict[str, str]:
    return {name: wh.checksum(name) for name in WAREHOUSE_TABLES}


def assert_reconciles(result: LoadResult) -> None:
    for report in [*result.source_tables.values(), *result.tables.values()]:
        assert report.rows_read == report.rows_valid + report.rows_quarantined, report.table
    assert result.rows_read == sum(r.rows_read for r in result.source_tables.values()) + result.unchanged


def empty(wh: Warehouse) -> bool:
    return all(n == 0 for n in wh.counts().values())


@pytest.fixture
def new_warehouse(tmp_path: Path) -> Callable[[str], Warehouse]:
    """Another initialised warehouse, to compare loads."""

    def make(name: str) -> Warehouse:
        wh = Warehouse(Settings(home=tmp_path / name))
        wh.init()
        return wh

    return make


# -- mapping ----------------------------------------------------------------------


def test_v11_package_maps_every_file_to_canonical_rows(warehouse: Warehouse) -> None:
    result = ingest_oneroster(warehouse, DATA / "v1p1")
    assert_reconciles(result)
    assert result.rows_quarantined == 0
    assert result.problems == []
    assert {t: r.rows_valid for t, r in result.source_tables.items()} == {
        "orgs": 3,
        "academicSessions": 3,
        "courses": 2,
        "classes": 3,
        "users": 8,
        "demographics": 5,
        "enrollments": 8,
    }
    org = lambda s: edsight_id("oneroster", "organization", s)  # noqa: E731
    term = lambda s: edsight_id("oneroster", "term", s)  # noqa: E731
    assert query(warehouse, "SELECT org_id, org_type, parent_org_id FROM organization ORDER BY name") == [
        (org("d1"), "district", None),
        (org("s1"), "school", org("d1")),
        (org("s2"), "school", org("d1")),
    ]
    # schoolYear 2025 is the year the school year ends; edsight keeps the fall year.
    assert query(
        warehouse, "SELECT term_id, term_type, school_year, parent_term_id FROM term ORDER BY 1"
    ) == sorted(
        [
            (term("y2025"), "school_year", 2024, None),
            (term("t1"), "semester", 2024, term("y2025")),
            (term("t2"), "semester", 2024, term("y2025")),
        ]
    )
    assert query(warehouse, "SELECT title, subject, grade_low, grade_high FROM course ORDER BY 1") == [
        ("Algebra I", "Mathematics", 9, 10),
        ("Grade 5 Mathematics", "Mathematics", 5, 5),
    ]
    # A class listing two terms is placed in the first.
    k2 = edsight_id("oneroster", "section", "k2")
    assert query(warehouse, "SELECT term_id, school_id FROM section WHERE section_id = ?", [k2]) == [
        (term("t1"), org("s2"))
    ]
    people = query(
        warehouse,
        "SELECT person_id, role, given_name, family_name, birth_date, local_id, directory_opt_out "
        "FROM person",
    )
    assert (pid("st1"), "student", "Maya", "Lopez", dt.date(2014, 3, 2), "100001", False) in people
    assert (pid("t1u"), "teacher", "Ada", "Lovelace", None, "E1001", False) in people
    assert (pid("p1"), "parent", "Rosa", "Lopez", None, None, False) in people
    assert len(people) == 8
    demo = dict(
        query(
            warehouse,
            "SELECT person_id, sex || '/' || coalesce(race_ethnicity, '-') FROM student_demographics",
        )
    )
    assert demo == {
        pid("st1"): "F/hispanic",  # hispanic wins over a race flag
        pid("st2"): "M/multiracial",  # two race flags
        pid("st3"): "F/black",
        pid("st4"): "M/multiracial",  # demographicRaceTwoOrMoreRaces
        pid("st5"): "F/-",  # no flag set
    }
    starts = dict(query(warehouse, "SELECT person_id || '@' || section_id, start_date FROM enrollment"))
    k1, k3 = (edsight_id("oneroster", "section", k) for k in ("k1", "k3"))
    assert starts[f"{pid('st1')}@{k1}"] == dt.date(2024, 8, 26)  # beginDate given
    assert starts[f"{pid('st4')}@{k2}"] == dt.date(2024, 9, 3)  # beginDate given
    assert starts[f"{pid('st5')}@{k3}"] == dt.date(2025, 1, 21)  # blank: the term's start
    assert starts[f"{pid('t1u')}@{k3}"] == dt.date(2025, 1, 21)
    id_map = query(warehouse, "SELECT source_system, entity, count(*) FROM id_map GROUP BY ALL ORDER BY ALL")
    assert id_map == [
        ("oneroster", "course", 2),
        ("oneroster", "enrollment", 8),
        ("oneroster", "organization", 3),
        ("oneroster", "person", 8),
        ("oneroster", "section", 3),
        ("oneroster", "term", 3),
        ("sis", "organization", 3),
    ]


def test_v12_package_gives_the_same_rows_as_v11(
    warehouse: Warehouse, new_warehouse: Callable[[str], Warehouse]
) -> None:
    ingest_oneroster(warehouse, DATA / "v1p1")
    other = new_warehouse("v12")
    result = ingest_oneroster(other, DATA / "v1p2")
    assert result.rows_quarantined == 0
    assert result.source_tables["roles"].rows_valid == 10
    for table in CANONICAL:
        assert other.checksum(table) == warehouse.checksum(table), table


def test_same_package_twice_changes_nothing_and_a_zip_equals_its_folder(
    warehouse: Warehouse, tmp_path: Path, new_warehouse: Callable[[str], Warehouse]
) -> None:
    archive = zip_folder(DATA / "v1p1", tmp_path / "export.zip")
    first = ingest_oneroster(warehouse, archive)
    after = snapshot(warehouse)
    again = ingest_oneroster(warehouse, archive)
    assert again.already_loaded
    assert again.batch_id == first.batch_id
    assert snapshot(warehouse) == after
    # The folder is other bytes with the same rows: every dated row is unchanged.
    folder = ingest_oneroster(warehouse, DATA / "v1p1")
    assert not folder.already_loaded
    assert folder.unchanged == 32
    assert folder.rows_stored == 0
    changed = {k for k, v in snapshot(warehouse).items() if v != after[k]}
    assert changed == {"load_batch"}
    other = new_warehouse("folder")
    ingest_oneroster(other, DATA / "v1p1")
    assert all(other.checksum(t) == warehouse.checksum(t) for t in CANONICAL)


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_a_generated_district_comes_back_unchanged(
    warehouse: Warehouse, tmp_path: Path, version: str
) -> None:
    district = generate_district(300, n_years=1, n_schools=3, seed=4)
    tables = district.tables
    archive = write_oneroster(tables, tmp_path / "district.zip", version=version)  # type: ignore[arg-type]
    result = ingest_oneroster(warehouse, archive)
    assert result.rows_quarantined == 0, result.problems
    assert_reconciles(result)
    people = tables["person"]
    expected_people = {
        (r.local_id, r.role, r.given_name, r.family_name, None if r.birth_date is None else r.birth_date)
        for r in people.astype(object).where(people.notna(), None).itertuples()
    }
    got = set(query(warehouse, "SELECT local_id, role, given_name, family_name, birth_date FROM person"))
    assert got == expected_people
    # Enrollments, by their source ids (id_map) on both sides.
    back = query(
        warehouse,
        "SELECT s.source_id, p.local_id, e.role, e.start_date, e.end_date FROM enrollment e "
        "JOIN id_map s ON s.entity = 'section' AND s.edsight_id = e.section_id "
        "AND s.source_system = 'oneroster' "
        "JOIN person p USING (person_id)",
    )
    enr = tables["enrollment"].merge(people[["person_id", "local_id"]], on="person_id")
    expected = {
        (r.section_id, r.local_id, r.role, r.start_date, r.end_date)
        for r in enr.astype(object).where(enr.notna(), None).itertuples()
    }
    assert set(back) == expected
    assert len(back) == len(enr)
    demo = tables["student_demographics"].merge(people[["person_id", "local_id"]], on="person_id")
    expected_demo = {(r.local_id, r.sex, r.race_ethnicity) for r in demo.itertuples()}
    got_demo = query(
        warehouse,
        "SELECT p.local_id, d.sex, d.race_ethnicity FROM student_demographics d "
        "JOIN person p USING (person_id)",
    )
    assert set(got_demo) == expected_demo
    terms = {(r.name, r.term_type, r.school_year, r.start_date) for r in tables["term"].itertuples()}
    assert set(query(warehouse, "SELECT name, term_type, school_year, start_date FROM term")) == terms
    assert warehouse.counts()["section"] == len(tables["section"])


# -- delta, cursors, deletes ----------------------------------------------------------


def test_delta_applies_changes_counts_unchanged_rows_and_deletes(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    ingest_oneroster(warehouse, DATA / "v1p1")
    users = {r["sourcedId"]: r for r in read_rows(DATA / "v1p1" / "users.csv")}
    enrollments = {r["sourcedId"]: r for r in read_rows(DATA / "v1p1" / "enrollments.csv")}
    renamed = dict(users["st1"], familyName="Lopez-Rivera", status="active", dateLastModified=LATER)
    gone = dict(users["st5"], status="tobedeleted", dateLastModified=LATER)
    dropped = dict(enrollments["e6"], status="tobedeleted", dateLastModified=LATER)
    k1 = next(r for r in read_rows(DATA / "v1p1" / "classes.csv") if r["sourcedId"] == "k1")
    closed = dict(k1, status="tobedeleted", dateLastModified=LATER)
    pkg = delta(
        tmp_path,
        "delta1",
        {"users": [renamed, users["st2"], gone], "enrollments": [dropped], "classes": [closed]},
    )
    result = ingest_oneroster(warehouse, pkg)
    assert_reconciles(result)
    assert result.rows_quarantined == 0, result.problems
    assert result.unchanged == 1  # st2: not newer than the cursor
    assert query(warehouse, "SELECT family_name FROM person WHERE person_id = ?", [pid("st1")]) == [
        ("Lopez-Rivera",)
    ]
    # st5 had no history outside the roster: the person goes with its enrollment and demographics;
    # class k1 goes with its three enrollments.
    assert result.deleted == {
        "person": 1,
        "section": 1,
        "enrollment": 2 + 3,
        "student_demographics": 1,
        "id_map": 3,
    }
    k1_id = edsight_id("oneroster", "section", "k1")
    assert query(warehouse, "SELECT count(*) FROM enrollment WHERE section_id = ?", [k1_id]) == [(0,)]
    assert warehouse.counts()["section"] == 2
    for table in ("person", "enrollment", "student_demographics"):
        assert query(warehouse, f"SELECT count(*) FROM {table} WHERE person_id = ?", [pid("st5")]) == [(0,)]
    assert query(warehouse, "SELECT count(*) FROM id_map WHERE source_id IN ('st5', 'e6', 'k1')") == [(0,)]
    assert query(warehouse, "SELECT count(*) FROM enrollment WHERE person_id = ?", [pid("st4")]) == [(0,)]
    cursors = dict(
        query(warehouse, "SELECT entity, cursor FROM sync_state WHERE source = 'oneroster:lakeside'")
    )
    assert cursors["users"] == "2024-09-15 08:30:00.000000"
    assert cursors["orgs"] == "2024-08-01 10:00:00.000000"
    # The same delta again is skipped; in new bytes (a trailing blank line) it finds nothing new.
    before = snapshot(warehouse)
    assert ingest_oneroster(warehouse, pkg).already_loaded
    with (pkg / "users.csv").open("a") as fh:
        fh.write("\n")
    repeat = ingest_oneroster(warehouse, pkg)
    assert not repeat.already_loaded
    assert repeat.unchanged == 5
    assert repeat.rows_stored == 0
    assert repeat.deleted == {}
    assert {k for k, v in snapshot(warehouse).items() if v != before[k]} == {"load_batch"}


def test_a_deleted_record_with_history_is_kept_and_reported(warehouse: Warehouse, tmp_path: Path) -> None:
    ingest_oneroster(warehouse, DATA / "v1p1")
    with warehouse.connect() as con:
        con.execute(
            "INSERT INTO attendance VALUES (?, ?, DATE '2024-09-10', 'absent_excused')",
            [pid("st3"), edsight_id("oneroster", "organization", "s2")],
        )
    users = {r["sourcedId"]: r for r in read_rows(DATA / "v1p1" / "users.csv")}
    orgs = {r["sourcedId"]: r for r in read_rows(DATA / "v1p1" / "orgs.csv")}
    pkg = delta(
        tmp_path,
        "d",
        {
            "users": [dict(users["st3"], status="tobedeleted", dateLastModified=LATER)],
            "orgs": [dict(orgs["s1"], status="tobedeleted", dateLastModified=LATER)],
        },
    )
    result = ingest_oneroster(warehouse, pkg)
    assert result.deleted == {}
    assert query(warehouse, "SELECT count(*) FROM person WHERE person_id = ?", [pid("st3")]) == [(1,)]
    assert query(warehouse, "SELECT count(*) FROM enrollment WHERE person_id = ?", [pid("st3")]) == [(1,)]
    notes = " | ".join(result.skipped)
    assert (
        "users.csv: 1 tobedeleted row(s) kept because the warehouse still refers to them (attendance)"
        in notes
    )
    assert "orgs.csv: 1 tobedeleted row(s) kept" in notes
    assert "section" in notes


def test_full_sync_restages_rows_the_cursor_would_skip(warehouse: Warehouse, tmp_path: Path) -> None:
    ingest_oneroster(warehouse, DATA / "v1p1")
    pkg = package(tmp_path)
    skipped = ingest_oneroster(warehouse, pkg)
    assert skipped.unchanged == 32
    full = ingest_oneroster(warehouse, pkg, full_sync=True)
    assert not full.already_loaded
    assert full.unchanged == 0
    assert full.rows_read == 32
    assert full.rows_quarantined == 0


def test_a_delta_enrollment_starts_with_its_class_term_from_the_warehouse(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    ingest_oneroster(warehouse, DATA / "v1p1")
    row: dict[str, object] = {
        "sourcedId": "e50",
        "status": "active",
        "dateLastModified": LATER,
        "classSourcedId": "k3",
        "schoolSourcedId": "s2",
        "userSourcedId": "st3",
        "role": "student",
    }
    result = ingest_oneroster(warehouse, delta(tmp_path, "d", {"enrollments": [row]}))
    assert result.problems == []
    assert set(result.tables) == {"enrollment", "id_map"}
    k3 = edsight_id("oneroster", "section", "k3")
    assert query(
        warehouse,
        "SELECT start_date FROM enrollment WHERE section_id = ? AND person_id = ?",
        [k3, pid("st3")],
    ) == [(dt.date(2025, 1, 21),)]


def test_a_1p2_delta_changes_a_role_through_roles_csv_only(warehouse: Warehouse, tmp_path: Path) -> None:
    ingest_oneroster(warehouse, DATA / "v1p2")
    roles = {r["sourcedId"]: r for r in read_rows(DATA / "v1p2" / "roles.csv")}
    changed = dict(roles["r3"], role="principal", dateLastModified=LATER)
    pkg = delta(tmp_path, "d", {"roles": [changed]}, version="1.2")
    # the helper's manifest lists 1.1 files; add roles
    with (pkg / "manifest.csv").open("a", newline="") as fh:
        csv.writer(fh).writerow(["file.roles", "delta"])
    result = ingest_oneroster(warehouse, pkg)
    assert result.rows_quarantined == 0, result.problems
    assert query(warehouse, "SELECT role, given_name FROM person WHERE person_id = ?", [pid("t2u")]) == [
        ("principal", "Alan")
    ]


# -- bad input -------------------------------------------------------------------------


def test_a_malformed_row_is_quarantined_and_the_rest_loads(warehouse: Warehouse, tmp_path: Path) -> None:
    pkg = package(tmp_path)
    with (pkg / "users.csv").open("a") as fh:
        fh.write('st9,active,,true,s1,student,x9,,Only,"Three fields\n')
        fh.write("st8,active,,true,s1,student,x8,,Eve,Ng,,100008,,,,,,\n")
    result = ingest_oneroster(warehouse, pkg)
    assert_reconciles(result)
    rows = quarantine(warehouse)
    assert rows[0][:3] == ("users", "users.csv", 9)
    assert "expected 18" in rows[0][4]
    assert warehouse.counts()["person"] == 8  # the eight good users; the malformed row swallowed st8
    assert result.source_tables["users"].rows_read == 9


def test_a_utf8_bom_is_fine_and_latin1_is_a_clear_error(warehouse: Warehouse, tmp_path: Path) -> None:
    pkg = package(tmp_path, name="bom")
    users = pkg / "users.csv"
    users.write_bytes(b"\xef\xbb\xbf" + users.read_bytes())
    assert ingest_oneroster(warehouse, pkg).rows_quarantined == 0
    assert warehouse.counts()["person"] == 8

    latin = package(tmp_path, name="latin")
    text = (latin / "users.csv").read_text().replace("Maya,Lopez", "María,López")
    (latin / "users.csv").write_bytes(text.encode("latin-1"))
    before = snapshot(warehouse)
    with pytest.raises(InvalidInput, match=r"users\.csv: not valid utf-8 text.*latin-1"):
        ingest_oneroster(warehouse, latin)
    assert snapshot(warehouse) == before
    # With the encoding named, it loads (full_sync: its rows are no newer than the BOM copy's).
    result = ingest_oneroster(warehouse, latin, encoding="latin-1", full_sync=True)
    assert query(warehouse, "SELECT given_name FROM person WHERE person_id = ?", [pid("st1")]) == [("María",)]
    assert result.rows_quarantined == 0


def test_a_missing_required_column_quarantines_the_file_and_its_dependants(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    pkg = package(tmp_path)
    rows = read_rows(pkg / "users.csv")
    header = [c for c in rows[0] if c != "familyName"]
    write_csv(pkg / "users.csv", rows, header)
    result = ingest_oneroster(warehouse, pkg)
    assert_reconciles(result)
    assert result.source_tables["users"].rows_quarantined == 8
    reasons = {(t, c, r) for t, _, _, c, r in quarantine(warehouse)}
    assert any(t == "users" and "missing required column(s) 'familyName'" in r for t, _, r in reasons)
    assert ("enrollments", "userSourcedId") in {(t, c) for t, c, _ in reasons}
    assert any("no user with this sourcedId in users.csv" in r for _, _, r in reasons)
    counts = warehouse.counts()
    assert counts["person"] == counts["enrollment"] == counts["student_demographics"] == 0
    assert counts["organization"] == 3
    assert counts["section"] == 3


def test_wrong_types_name_the_column_and_dependants_say_why(warehouse: Warehouse, tmp_path: Path) -> None:
    pkg = package(tmp_path)
    edit(
        pkg / "academicSessions.csv",
        lambda rows: [dict(r, startDate="next fall") if r["sourcedId"] == "t2" else r for r in rows],
    )
    edit(
        pkg / "users.csv",
        lambda rows: [dict(r, enabledUser="maybe") if r["sourcedId"] == "p1" else r for r in rows],
    )
    result = ingest_oneroster(warehouse, pkg)
    assert_reconciles(result)
    rows = {(t, f, n, c): r for t, f, n, c, r in quarantine(warehouse)}
    assert rows[("academicSessions", "academicSessions.csv", 3, "startDate")] == (
        "academicSessions.csv: row 3, column 'startDate': expected a date (YYYY-MM-DD), got next fall"
    )
    assert (
        "column 'enabledUser': expected true or false, got maybe"
        in rows[("users", "users.csv", 8, "enabledUser")]
    )
    # k2 and k3 list t2: they are quarantined with the reason, and their enrollments with them.
    assert rows[("classes", "classes.csv", 3, "termSourcedIds")] == (
        "classes.csv: row 3, column 'termSourcedIds': refers to a academic session that was quarantined "
        "(see academicSessions.csv)"
    )
    assert {n for t, f, n, c in rows if t == "classes"} == {2, 3}
    assert {n for t, f, n, c in rows if t == "enrollments"} == {4, 5, 6, 7, 8}
    assert (
        "refers to a class that was quarantined"
        in rows[("enrollments", "enrollments.csv", 4, "classSourcedId")]
    )
    assert warehouse.counts()["enrollment"] == 3


def test_duplicate_sourced_ids_keep_the_first_row(warehouse: Warehouse, tmp_path: Path) -> None:
    pkg = package(tmp_path)
    edit(pkg / "users.csv", lambda rows: [*rows, dict(rows[3], givenName="Duplicate")])
    result = ingest_oneroster(warehouse, pkg)
    assert quarantine(warehouse) == [
        (
            "users",
            "users.csv",
            9,
            "sourcedId",
            "users.csv: row 9, duplicate key (sourcedId): same key as users.csv row 4",
        )
    ]
    assert query(warehouse, "SELECT given_name FROM person WHERE person_id = ?", [pid("st2")]) == [("Noah",)]
    assert_reconciles(result)


def test_references_to_missing_classes_and_users_are_quarantined(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    pkg = package(tmp_path)
    extra = [
        {
            "sourcedId": "e90",
            "classSourcedId": "k99",
            "schoolSourcedId": "s1",
            "userSourcedId": "st1",
            "role": "student",
        },
        {
            "sourcedId": "e91",
            "classSourcedId": "k1",
            "schoolSourcedId": "s1",
            "userSourcedId": "ghost",
            "role": "student",
        },
    ]
    edit(pkg / "enrollments.csv", lambda rows: rows + extra)
    result = ingest_oneroster(warehouse, pkg)
    assert_reconciles(result)
    assert quarantine(warehouse) == [
        (
            "enrollments",
            "enrollments.csv",
            9,
            "classSourcedId",
            "enrollments.csv: row 9, column 'classSourcedId': no class with this sourcedId in classes.csv "
            "or loaded before",
        ),
        (
            "enrollments",
            "enrollments.csv",
            10,
            "userSourcedId",
            "enrollments.csv: row 10, column 'userSourcedId': no user with this sourcedId in users.csv "
            "or loaded before",
        ),
    ]
    assert warehouse.counts()["enrollment"] == 8


def test_tobedeleted_in_a_bulk_file_is_quarantined_and_deletes_nothing(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    ingest_oneroster(warehouse, DATA / "v1p1")
    pkg = package(tmp_path)
    edit(
        pkg / "users.csv",
        lambda rows: [
            dict(r, status="tobedeleted", dateLastModified=LATER) if r["sourcedId"] == "p1" else r
            for r in rows
        ],
    )
    result = ingest_oneroster(warehouse, pkg)
    assert result.deleted == {}
    assert [r[3:] for r in quarantine(warehouse)] == [
        ("status", "users.csv: row 8, column 'status': expected one of active, inactive, got tobedeleted")
    ]
    assert query(warehouse, "SELECT count(*) FROM person WHERE person_id = ?", [pid("p1")]) == [(1,)]


def test_delta_rows_need_a_date_and_quoted_empty_cells_are_nulls(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    ingest_oneroster(warehouse, DATA / "v1p1")
    users = {r["sourcedId"]: r for r in read_rows(DATA / "v1p1" / "users.csv")}
    pkg = delta(
        tmp_path,
        "d",
        {
            "users": [
                dict(users["st1"], dateLastModified=""),
                dict(users["st2"], givenName="Noa", dateLastModified=LATER),
            ]
        },
    )
    # Quote every cell, as many SIS exporters do: "" must still read as a blank.
    rows = read_rows(pkg / "users.csv")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), quoting=csv.QUOTE_ALL)
    writer.writeheader()
    writer.writerows(rows)
    (pkg / "users.csv").write_text(buffer.getvalue())
    result = ingest_oneroster(warehouse, pkg)
    assert [r[3:] for r in quarantine(warehouse)] == [
        ("dateLastModified", "users.csv: row 1, column 'dateLastModified': required value is missing")
    ]
    assert query(warehouse, "SELECT given_name, local_id FROM person WHERE person_id = ?", [pid("st2")]) == [
        ("Noa", "100002")
    ]
    assert result.rows_stored > 0


def test_unknown_columns_are_ignored_and_headers_match_regardless_of_case(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    pkg = package(tmp_path)
    demo = (pkg / "demographics.csv").read_text().replace("birthDate", "BIRTHDATE", 1)
    (pkg / "demographics.csv").write_text(demo)
    rows = read_rows(pkg / "users.csv")
    write_csv(pkg / "users.csv", [dict(r, nickname="x", **{"metadata.house": "red"}) for r in rows])
    result = ingest_oneroster(warehouse, pkg)
    assert result.rows_quarantined == 0
    assert any(
        "'nickname', 'metadata.house' are not part of OneRoster 1.1 users.csv" in n for n in result.skipped
    )
    assert query(warehouse, "SELECT birth_date FROM person WHERE person_id = ?", [pid("st1")]) == [
        (dt.date(2014, 3, 2),)
    ]


def test_a_student_another_source_created_first_is_taken_over(warehouse: Warehouse, make_batch: Any) -> None:
    person = {"person_id": "mp-per-1", "role": "student", "local_id": "100003", "directory_opt_out": "true"}
    warehouse.load_directory(make_batch("map", person=[person]))
    ingest_oneroster(warehouse, DATA / "v1p1")
    assert warehouse.counts()["person"] == 8  # no second person for student 100003
    assert query(warehouse, "SELECT edsight_id FROM id_map WHERE source_id = 'st3'") == [("mp-per-1",)]
    assert query(
        warehouse, "SELECT given_name, directory_opt_out FROM person WHERE person_id = 'mp-per-1'"
    ) == [("Zoe", True)]
    assert query(warehouse, "SELECT count(*) FROM enrollment WHERE person_id = 'mp-per-1'") == [(1,)]


def test_a_1p2_user_without_a_role_is_quarantined(warehouse: Warehouse, tmp_path: Path) -> None:
    pkg = package(tmp_path, "v1p2")
    edit(pkg / "roles.csv", lambda rows: [r for r in rows if r["userSourcedId"] != "st5"])
    result = ingest_oneroster(warehouse, pkg)
    assert_reconciles(result)
    rows = {r[:4]: r[4] for r in quarantine(warehouse)}
    assert set(rows) == {
        ("users", "users.csv", 7, "sourcedId"),
        ("enrollments", "enrollments.csv", 7, "userSourcedId"),
        ("demographics", "demographics.csv", 5, "sourcedId"),
    }
    assert (
        "no role for this user: OneRoster 1.2 keeps roles in roles.csv"
        in rows[("users", "users.csv", 7, "sourcedId")]
    )
    assert (
        "refers to a user that was quarantined"
        in rows[("enrollments", "enrollments.csv", 7, "userSourcedId")]
    )
    assert warehouse.counts()["person"] == 7


# -- packages and manifests ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: (p / "manifest.csv").unlink(), r"no manifest\.csv"),
        (lambda p: (p / "users.csv").unlink(), r"file\.users = bulk, but the package has no users\.csv"),
        (
            lambda p: (p / "manifest.csv").write_text(
                (p / "manifest.csv").read_text().replace("oneroster.version,1.1", "oneroster.version,1.0")
            ),
            r"oneroster\.version is '1\.0'",
        ),
        (
            lambda p: (p / "manifest.csv").write_text(
                (p / "manifest.csv").read_text().replace("file.orgs,bulk", "file.orgs,full")
            ),
            r"file\.orgs = 'full'; expected bulk, delta or absent",
        ),
        (
            lambda p: (p / "manifest.csv").write_text("name,value\noneroster.version,1.1\n"),
            r"must start with the header propertyName,value",
        ),
    ],
)
def test_manifest_problems_stop_the_load(
    warehouse: Warehouse, tmp_path: Path, change: Callable[[Path], object], message: str
) -> None:
    pkg = package(tmp_path)
    change(pkg)
    with pytest.raises(InvalidInput, match=message):
        ingest_oneroster(warehouse, pkg)
    assert empty(warehouse)


def test_a_file_the_manifest_marks_absent_is_not_read(warehouse: Warehouse, tmp_path: Path) -> None:
    pkg = package(tmp_path)
    manifest = (
        (pkg / "manifest.csv").read_text().replace("file.demographics,bulk", "file.demographics,absent")
    )
    (pkg / "manifest.csv").write_text(manifest)
    (pkg / "results.csv").write_text("sourcedId\nx\n")
    result = ingest_oneroster(warehouse, pkg)
    assert "demographics.csv: the manifest marks it absent (or omits it); not read" in result.skipped
    assert any(s.startswith("results.csv: gradebook") for s in result.skipped)
    assert warehouse.counts()["student_demographics"] == 0
    assert read_manifest(pkg / "manifest.csv", "pkg").modes["users"] == "bulk"


def test_truncated_corrupt_and_hostile_zips_store_nothing(
    warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = zip_folder(DATA / "v1p1", tmp_path / "good.zip")
    data = good.read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInput, match=r"truncated\.zip: not a zip archive \(truncated or corrupt\?\)"):
        ingest_oneroster(warehouse, truncated)
    # Flip bytes inside the first member's compressed data: the CRC (or inflate) fails.
    corrupt = tmp_path / "corrupt.zip"
    with zipfile.ZipFile(good) as zf:
        info = zf.infolist()[0]
    start = info.header_offset + 30 + len(info.filename) + 5
    damaged = bytearray(data)
    for i in range(start, start + 8):
        damaged[i] ^= 0xFF
    corrupt.write_bytes(bytes(damaged))
    with pytest.raises(InvalidInput, match=rf"corrupt\.zip: member {info.filename} cannot be read"):
        ingest_oneroster(warehouse, corrupt)
    # A member that inflates far beyond any CSV is refused before it is written out.
    bomb = tmp_path / "bomb.zip"
    shutil.copy(good, bomb)
    with zipfile.ZipFile(bomb, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("results.csv", b"\0" * (24 << 20))
    with pytest.raises(InvalidInput, match=r"results\.csv compresses \d+:1, which looks like a zip bomb"):
        ingest_oneroster(warehouse, bomb)
    monkeypatch.setattr(_oneroster_package, "MAX_UNPACKED_BYTES", 1000)
    with pytest.raises(InvalidInput, match=r"good\.zip: unpacks to more than"):
        ingest_oneroster(warehouse, good)
    assert empty(warehouse)


def test_member_paths_in_a_zip_are_never_used_as_paths(warehouse: Warehouse, tmp_path: Path) -> None:
    archive = tmp_path / "nested.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((DATA / "v1p1").iterdir()):
            zf.write(path, f"../../escape/{path.name}" if path.name == "users.csv" else f"export/{path.name}")
    result = ingest_oneroster(warehouse, archive)
    assert result.rows_quarantined == 0
    assert warehouse.counts()["person"] == 8
    assert not (tmp_path.parent / "escape").exists()


# -- crashes ------------------------------------------------------------------------------

_LOADER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from edsight.config import Settings
    from edsight.ingest.oneroster import ingest_oneroster
    from edsight.store.warehouse import Warehouse

    home, source, kill_at, marker = sys.argv[1:5]

    def progress(step):
        if step == kill_at:
            Path(marker).write_text(step)
            time.sleep(600)

    ingest_oneroster(Warehouse(Settings(home=Path(home))), Path(source), progress=progress)
    """
)


def test_killing_a_load_stores_nothing_and_a_rerun_completes_it(
    warehouse: Warehouse, tmp_path: Path, new_warehouse: Callable[[str], Warehouse]
) -> None:
    # SIGKILL while the canonical rows are being applied, inside the load's transaction.
    kill_at = "applied enrollment"
    archive = zip_folder(DATA / "v1p1", tmp_path / "export.zip")
    marker = tmp_path / "marker"
    kill_when_marked(_LOADER, str(warehouse.settings.home), str(archive), kill_at, str(marker), marker=marker)
    assert empty(warehouse)  # no rows, no cursors, no load_batch row
    result = ingest_oneroster(warehouse, archive)
    assert not result.already_loaded
    assert result.unchanged == 0
    clean = new_warehouse("clean")
    ingest_oneroster(clean, archive)
    for table in CANONICAL:
        assert warehouse.checksum(table) == clean.checksum(table), table
