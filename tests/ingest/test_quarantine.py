"""Bad input: each kind is reported with file, row and column, kept in quarantine,
and never stops the valid rows; counts always reconcile."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import TINY, Rows, write_csv

from edsight.config import Settings
from edsight.errors import InvalidInput
from edsight.store.warehouse import Warehouse


def quarantine(wh: Warehouse) -> list[tuple[str, str, int, str | None, str, str]]:
    with wh.connect(read_only=True) as con:
        return con.execute(
            "SELECT table_name, source_file, row_number, column_name, reason, record "
            "FROM quarantine ORDER BY table_name, source_file, row_number"
        ).fetchall()


def ids(wh: Warehouse, table: str, key: str) -> list[str]:
    with wh.connect(read_only=True) as con:
        return [r[0] for r in con.execute(f'SELECT "{key}" FROM "{table}" ORDER BY 1').fetchall()]


def test_clean_batch_is_stored_whole(warehouse: Warehouse, tiny_batch: Path) -> None:
    result = warehouse.load_directory(tiny_batch)
    assert result.rows_quarantined == 0
    assert result.rows_stored == result.rows_read == 13
    assert ids(warehouse, "person", "person_id") == [f"p{i}" for i in range(1, 7)]
    assert quarantine(warehouse) == []


def test_wrong_types_are_quarantined_with_file_row_and_column(
    warehouse: Warehouse, make_batch: Callable[..., Path]
) -> None:
    attendance: Rows = [
        {"person_id": "p1", "school_id": "s1", "date": "2024-09-03", "status": "tardy"},
        {"person_id": "p2", "school_id": "s1", "date": "not-a-date", "status": "tardy"},
        {"person_id": "p3", "school_id": "s1", "date": "2024-09-03", "status": "asleep"},
    ]
    orgs = [{**o, "grade_low": "K"} if o["org_id"] == "s2" else o for o in TINY["organization"]]
    batch = make_batch(organization=orgs, person=TINY["person"], attendance=attendance)
    result = warehouse.load_directory(batch)
    rows = quarantine(warehouse)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("attendance", "attendance.csv", 2, "date"),
        ("attendance", "attendance.csv", 3, "status"),
        ("organization", "organization.csv", 3, "grade_low"),
    ]
    assert rows[0][4] == (
        "attendance.csv: row 2, column 'date': expected a date (YYYY-MM-DD), got not-a-date"
    )
    assert rows[1][4].endswith("expected one of absent_excused, absent_unexcused, tardy, present, got asleep")
    assert rows[2][4] == "organization.csv: row 3, column 'grade_low': expected an integer, got K"
    assert json.loads(rows[0][5])["date"] == "not-a-date"
    assert ids(warehouse, "attendance", "person_id") == ["p1"]
    assert result.tables["attendance"].rows_read == 3
    assert result.tables["attendance"].rows_valid == 1
    assert result.tables["attendance"].rows_quarantined == 2


def test_fractions_do_not_pass_as_integers(warehouse: Warehouse, make_batch: Callable[..., Path]) -> None:
    orgs = [{**o, "grade_high": "5.5"} if o["org_id"] == "s1" else o for o in TINY["organization"]]
    warehouse.load_directory(make_batch(organization=orgs))
    (row,) = quarantine(warehouse)
    assert row[3] == "grade_high"
    assert "expected an integer, got 5.5" in row[4]


def test_ranges_and_required_values(warehouse: Warehouse, make_batch: Callable[..., Path]) -> None:
    orgs = [
        {"org_id": "d1", "name": "District", "org_type": "district"},
        {"org_id": "s1", "name": "", "org_type": "school", "parent_org_id": "d1"},
        {"org_id": "s2", "name": "Far", "org_type": "school", "parent_org_id": "d1", "grade_high": 40},
    ]
    warehouse.load_directory(make_batch(organization=orgs))
    rows = quarantine(warehouse)
    assert [r[4] for r in rows] == [
        "organization.csv: row 2, column 'name': required value is missing",
        "organization.csv: row 3, column 'grade_high': expected a value <= 13, got 40",
    ]


def test_pii_values_are_never_echoed(warehouse: Warehouse, make_batch: Callable[..., Path]) -> None:
    people = [dict(TINY["person"][0], birth_date="SECRET-DOB")]
    warehouse.load_directory(make_batch(person=people))
    (row,) = quarantine(warehouse)
    assert row[4] == "person.csv: row 1, column 'birth_date': expected a date (YYYY-MM-DD)"
    assert "SECRET" not in row[4]


def test_duplicate_keys_keep_the_first_row(warehouse: Warehouse, make_batch: Callable[..., Path]) -> None:
    people = [*TINY["person"][:2], dict(TINY["person"][0], given_name="Other")]
    warehouse.load_directory(make_batch(person=people))
    (row,) = quarantine(warehouse)
    assert row[:4] == ("person", "person.csv", 3, "person_id")
    assert row[4] == "person.csv: row 3, duplicate key (person_id): same key as person.csv row 1"
    with warehouse.connect(read_only=True) as con:
        assert con.execute("SELECT given_name FROM person WHERE person_id='p1'").fetchone() == ("Given1",)


def test_dangling_foreign_keys_are_quarantined(warehouse: Warehouse, make_batch: Callable[..., Path]) -> None:
    attendance = [
        *TINY["attendance"],
        {"person_id": "ghost", "school_id": "s1", "date": "2024-09-03", "status": "tardy"},
        {"person_id": "p1", "school_id": "nowhere", "date": "2024-09-09", "status": "tardy"},
    ]
    orgs = [
        *TINY["organization"],
        {"org_id": "s9", "name": "Lost", "org_type": "school", "parent_org_id": "d7"},
    ]
    warehouse.load_directory(make_batch(organization=orgs, person=TINY["person"], attendance=attendance))
    rows = quarantine(warehouse)
    assert [(r[0], r[2], r[3]) for r in rows] == [
        ("attendance", 5, "person_id"),
        ("attendance", 6, "school_id"),
        ("organization", 4, "parent_org_id"),
    ]
    assert rows[0][4] == "attendance.csv: row 5, unknown person_id: no row of person has this person_id"
    assert "ghost" not in rows[0][4]
    assert len(ids(warehouse, "attendance", "person_id")) == 4


def test_children_of_quarantined_parents_are_quarantined_too(
    warehouse: Warehouse, make_batch: Callable[..., Path]
) -> None:
    people = [dict(p, role="wizard") if p["person_id"] == "p1" else p for p in TINY["person"]]
    result = warehouse.load_directory(
        make_batch(organization=TINY["organization"], person=people, attendance=TINY["attendance"])
    )
    assert result.tables["person"].rows_quarantined == 1
    assert result.tables["attendance"].rows_quarantined == 2  # both rows of p1
    reasons = [r[4] for r in quarantine(warehouse) if r[0] == "attendance"]
    assert reasons == [
        "attendance.csv: row 1, person_id refers to a row of person that was quarantined",
        "attendance.csv: row 2, person_id refers to a row of person that was quarantined",
    ]


def test_parents_already_in_the_warehouse_satisfy_foreign_keys(
    warehouse: Warehouse, make_batch: Callable[..., Path]
) -> None:
    warehouse.load_directory(make_batch("first", organization=TINY["organization"], person=TINY["person"]))
    result = warehouse.load_directory(make_batch("second", attendance=TINY["attendance"]))
    assert result.rows_quarantined == 0
    assert result.rows_stored == 4


def test_unknown_column_quarantines_the_file_and_names_it(
    warehouse: Warehouse, make_batch: Callable[..., Path]
) -> None:
    people = [dict(p, shoe_size=42) for p in TINY["person"]]
    result = warehouse.load_directory(make_batch(organization=TINY["organization"], person=people))
    assert result.tables["person"].rows_quarantined == 6
    assert result.tables["organization"].rows_valid == 3
    message = result.tables["person"].problems[0]
    assert message.startswith("person.csv: unknown column(s) 'shoe_size' for table person")
    assert all(r[4].startswith("person.csv: unknown column(s) 'shoe_size'") for r in quarantine(warehouse))


def test_missing_required_column_quarantines_the_file(
    warehouse: Warehouse, make_batch: Callable[..., Path]
) -> None:
    people = [{k: v for k, v in p.items() if k != "role"} for p in TINY["person"]]
    result = warehouse.load_directory(make_batch(person=people))
    assert result.tables["person"].problems == ["person.csv: missing required column(s) 'role'"]
    assert result.rows_stored == 0


def test_malformed_csv_rows_are_quarantined(warehouse: Warehouse, tmp_path: Path) -> None:
    folder = tmp_path / "malformed"
    folder.mkdir()
    (folder / "organization.csv").write_text(
        "org_id,name,org_type\nd1,District,district\nd2,Two,district,extra\nd3,Three,district\n"
    )
    result = warehouse.load_directory(folder)
    (row,) = quarantine(warehouse)
    assert row[:3] == ("organization", "organization.csv", 2)
    assert row[4] == "organization.csv: row 2, row has 4 fields, expected 3"
    assert ids(warehouse, "organization", "org_id") == ["d1", "d3"]
    assert result.tables["organization"].rows_read == 3


def test_parquet_with_typed_columns(warehouse: Warehouse, tmp_path: Path) -> None:
    folder = tmp_path / "pq"
    folder.mkdir()
    pq.write_table(
        pa.table(
            {
                "org_id": ["d1", "s1"],
                "name": ["D", "S"],
                "org_type": ["district", "school"],
                "parent_org_id": [None, "d1"],
                "grade_low": pa.array([None, 0], pa.int8()),
                "grade_high": pa.array([None, 5.5], pa.float64()),
            }
        ),
        folder / "organization.parquet",
    )
    result = warehouse.load_directory(folder)
    assert result.tables["organization"].rows_valid == 1
    assert quarantine(warehouse)[0][3] == "grade_high"


def test_unknown_table_file_is_an_input_error(warehouse: Warehouse, make_batch: Callable[..., Path]) -> None:
    folder = make_batch(organization=TINY["organization"], grades_export=[{"a": 1}])
    with pytest.raises(InvalidInput, match=r"^grades_export\.csv: not a table edsight knows"):
        warehouse.load_directory(folder)
    assert warehouse.counts()["organization"] == 0


_cell = st.one_of(
    st.sampled_from(["absent_excused", "tardy", "present", "late!", "", "2024-09-03", "x"]),
    st.text(alphabet='abc,"\n 0123-', max_size=6),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["p1", "p2", "zz", ""]),
            st.sampled_from(["s1", "s9"]),
            st.sampled_from(["2024-09-03", "2024-09-04", "2024-02-30", "soon"]),
            _cell,
        ),
        min_size=1,
        max_size=30,
    )
)
def test_counts_always_reconcile(tmp_path_factory: object, rows: list[tuple[str, str, str, str]]) -> None:
    """Whatever the rows, read == stored + quarantined and stored rows are exactly the valid ones."""
    base = tmp_path_factory.mktemp("prop")  # type: ignore[attr-defined]
    wh = Warehouse(Settings(home=base / "home"))
    wh.init()
    folder = base / "batch"
    write_csv(folder / "organization.csv", TINY["organization"])
    write_csv(folder / "person.csv", TINY["person"][:2])
    att = [{"person_id": a, "school_id": b, "date": c, "status": d} for a, b, c, d in rows]
    write_csv(folder / "attendance.csv", att)
    result = wh.load_directory(folder)
    rep = result.tables["attendance"]
    assert rep.rows_read == len(rows)
    assert rep.rows_read == rep.rows_valid + rep.rows_quarantined
    seen: set[tuple[str, str]] = set()
    expected = []
    for a, b, c, d in rows:
        ok = a in ("p1", "p2") and b == "s1" and c in ("2024-09-03", "2024-09-04")
        ok = ok and d in ("absent_excused", "tardy", "present")
        if ok and (a, c) not in seen:
            seen.add((a, c))
            expected.append((a, c))
    with wh.connect(read_only=True) as con:
        stored = con.execute("SELECT person_id, CAST(date AS VARCHAR) FROM attendance").fetchall()
    assert sorted(stored) == sorted(expected)


def test_query_connections_cannot_read_files(warehouse: Warehouse) -> None:
    with (
        warehouse.connect(read_only=True) as con,
        pytest.raises(duckdb.PermissionException, match="file system operations are disabled"),
    ):
        con.execute("SELECT * FROM read_csv('/etc/passwd')").fetchall()


def test_utf8_bom_is_accepted(warehouse: Warehouse, tmp_path: Path) -> None:
    folder = tmp_path / "bom"
    folder.mkdir()
    (folder / "organization.csv").write_bytes(b"\xef\xbb\xbforg_id,name,org_type\nd1,District,district\n")
    result = warehouse.load_directory(folder)
    assert result.rows_stored == 1
    assert result.rows_quarantined == 0


def test_latin1_is_a_clear_error_and_stores_nothing(warehouse: Warehouse, tmp_path: Path) -> None:
    folder = tmp_path / "latin1"
    folder.mkdir()
    (folder / "organization.csv").write_bytes(
        "org_id,name,org_type\nd1,Escuela Núñez,district\n".encode("latin-1")
    )
    with pytest.raises(InvalidInput, match=r"organization\.csv: not valid utf-8 text.*--encoding latin-1"):
        warehouse.load_directory(folder)
    assert warehouse.counts()["organization"] == 0


def test_several_relations_per_table_keep_their_rows(warehouse: Warehouse) -> None:
    """Inputs added one after another, to one table or several, never overwrite each other."""
    from edsight.ingest.quarantine import BatchValidator
    from edsight.schema import CANONICAL

    with warehouse.connect() as con:
        validator = BatchValidator(con, CANONICAL, prefix="t")
        for org_id in ("a", "b"):
            validator.add_relation(
                "organization",
                f"SELECT 'x' AS __file, 1::BIGINT AS __row, '{org_id}' AS org_id, 'N' AS name, "
                "'district' AS org_type",
                org_id,
            )
        validator.add_relation(
            "person",
            "SELECT 'y' AS __file, 1::BIGINT AS __row, 'p' AS person_id, 'student' AS role, "
            "false AS directory_opt_out",
            "p",
        )
        reports = validator.run()
    assert reports["organization"].rows_read == 2
    assert reports["person"].rows_read == 1
    assert reports["person"].rows_valid == 1


def test_a_row_with_a_bad_reference_does_not_shadow_a_valid_duplicate(
    warehouse: Warehouse, make_batch: Callable[..., Path]
) -> None:
    """Found by the reconciliation property: the valid later row wins over the invalid first one."""
    attendance = [
        {"person_id": "p1", "school_id": "s9", "date": "2024-09-03", "status": "absent_excused"},
        {"person_id": "p1", "school_id": "s1", "date": "2024-09-03", "status": "absent_excused"},
    ]
    warehouse.load_directory(
        make_batch(organization=TINY["organization"], person=TINY["person"], attendance=attendance)
    )
    assert ids(warehouse, "attendance", "school_id") == ["s1"]
    (row,) = quarantine(warehouse)
    assert row[2:4] == (1, "school_id")
