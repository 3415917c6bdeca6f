"""The canonical schema: complete, consistent, creatable."""

from __future__ import annotations

import duckdb
import pytest

from edsight.schema import CANONICAL, CANVAS_SEED, SYSTEM, Column, Table, load_order

DESIGN_ENTITIES = {
    "organization",
    "person",
    "student_demographics",
    "term",
    "course",
    "section",
    "enrollment",
    "assignment",
    "submission",
    "lms_activity",
    "attendance",
    "discipline",
    "assessment_result",
    "intervention",
    "risk_score",
    "alert",
    "audit_event",
    "disclosure",
    "id_map",
}


def test_every_entity_of_the_design_is_declared() -> None:
    assert set(CANONICAL) >= DESIGN_ENTITIES


@pytest.mark.parametrize("tables", [CANONICAL, CANVAS_SEED])
def test_load_order_puts_parents_first(tables: dict[str, Table]) -> None:
    order = load_order(tables)
    assert sorted(order) == sorted(tables)
    for name in order:
        for fk in tables[name].foreign_keys:
            if fk.table != name:
                assert order.index(fk.table) < order.index(name), (name, fk.table)


def test_load_order_of_a_subset_keeps_only_the_subset() -> None:
    assert load_order(CANONICAL, ["attendance", "person"]) == ["person", "attendance"]


def test_ddl_creates_declared_types() -> None:
    con = duckdb.connect()
    for table in {**CANONICAL, **SYSTEM}.values():
        con.execute(table.ddl())
        described = {row[0]: (row[1], row[2]) for row in con.execute(f'DESCRIBE "{table.name}"').fetchall()}
        assert list(described) == list(table.column_names)
        for col in table.columns:
            sql_type, null = described[col.name]
            assert sql_type == col.sql_type
            assert (null == "YES") == col.nullable


def test_a_table_rejects_keys_that_are_not_columns() -> None:
    with pytest.raises(ValueError, match="key column nope"):
        Table("t", (Column("a", "string"),), ("nope",))


def test_direct_identifiers_are_marked_pii() -> None:
    person = CANONICAL["person"].column_index
    for name in ("given_name", "family_name", "birth_date", "local_id", "state_id"):
        assert person[name].pii
    assert not person["role"].pii


def test_canvas_seed_declaration_matches_the_generator() -> None:
    from edsight.synth.canvas import CANVAS_COLUMNS, CANVAS_TABLES

    assert tuple(CANVAS_SEED) == tuple(sorted(CANVAS_SEED, key=CANVAS_TABLES.index))
    for name in CANVAS_TABLES:
        assert CANVAS_SEED[name].column_names == tuple(CANVAS_COLUMNS[name]), name


def test_district_tables_are_canonical() -> None:
    from edsight.synth.district import DISTRICT_TABLES

    for name in DISTRICT_TABLES:
        assert name in CANONICAL, name
