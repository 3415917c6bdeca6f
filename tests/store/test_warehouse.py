"""Warehouse: init, idempotent loads, replacement by key, crash safety, lake round trip."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from tests.conftest import TINY, kill_when_marked, write_csv

from edsight.config import Settings
from edsight.errors import WarehouseError
from edsight.schema import CANONICAL, WAREHOUSE_TABLES
from edsight.store.lake import export_lake
from edsight.store.warehouse import Warehouse


def snapshot(wh: Warehouse) -> dict[str, str]:
    return {name: wh.checksum(name) for name in WAREHOUSE_TABLES}


def test_init_creates_every_table_once(settings: Settings) -> None:
    wh = Warehouse(settings)
    assert wh.init() is True
    assert wh.path == settings.home / "warehouse.duckdb"
    assert set(wh.counts()) == set(WAREHOUSE_TABLES)
    assert wh.init() is False


def test_connecting_without_init_says_what_to_do(settings: Settings) -> None:
    with pytest.raises(WarehouseError, match="run `edsight init` first"):
        Warehouse(settings).counts()


def test_loading_the_same_batch_twice_changes_nothing(warehouse: Warehouse, tiny_batch: Path) -> None:
    first = warehouse.load_directory(tiny_batch)
    after_first = snapshot(warehouse)
    second = warehouse.load_directory(tiny_batch)
    assert second.already_loaded
    assert second.batch_id == first.batch_id
    assert snapshot(warehouse) == after_first
    forced = warehouse.load_directory(tiny_batch, force=True)
    assert not forced.already_loaded
    after_forced = snapshot(warehouse)
    assert after_forced.pop("load_batch") != after_first.pop("load_batch")  # new load time
    assert after_forced == after_first  # replaced rows are the same rows


def test_same_rows_in_another_format_change_nothing(
    warehouse: Warehouse, tiny_batch: Path, tmp_path: Path
) -> None:
    warehouse.load_directory(tiny_batch)
    before = snapshot(warehouse)
    as_parquet = tmp_path / "as_parquet"
    as_parquet.mkdir()
    for csv_file in tiny_batch.glob("*.csv"):
        table = pcsv.read_csv(csv_file, convert_options=pcsv.ConvertOptions(strings_can_be_null=True))
        pq.write_table(table, as_parquet / f"{csv_file.stem}.parquet")
    result = warehouse.load_directory(as_parquet)
    assert not result.already_loaded
    assert result.rows_quarantined == 0
    changed = {k for k, v in snapshot(warehouse).items() if v != before[k]}
    assert changed == {"load_batch"}


def test_a_new_version_of_a_row_replaces_the_old(
    warehouse: Warehouse, make_batch: Callable[..., Path]
) -> None:
    warehouse.load_directory(make_batch("v1", organization=TINY["organization"]))
    renamed = [dict(o, name="Renamed") if o["org_id"] == "s1" else o for o in TINY["organization"]]
    warehouse.load_directory(make_batch("v2", organization=renamed))
    with warehouse.connect(read_only=True) as con:
        rows = con.execute("SELECT org_id, name FROM organization ORDER BY org_id").fetchall()
    assert rows == [("d1", "District One"), ("s1", "Renamed"), ("s2", "Oak Middle")]


def test_an_error_mid_load_rolls_everything_back(
    warehouse: Warehouse, tiny_batch: Path, make_batch: Callable[..., Path]
) -> None:
    warehouse.load_directory(make_batch("base", organization=TINY["organization"]))
    before = snapshot(warehouse)

    def explode(step: str) -> None:
        if step == "applied person":
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        warehouse.load_directory(tiny_batch, progress=explode)
    assert snapshot(warehouse) == before


_LOADER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from edsight.config import Settings
    from edsight.store.warehouse import Warehouse

    home, batch, kill_at, marker = sys.argv[1:5]

    def progress(step):
        if step == kill_at:
            Path(marker).write_text(step)
            time.sleep(600)

    Warehouse(Settings(home=Path(home))).load_directory(Path(batch), progress=progress)
    """
)


def _big_batch(folder: Path, n_people: int) -> Path:
    write_csv(folder / "organization.csv", TINY["organization"])
    people = [
        {
            "person_id": f"q{i}",
            "role": "student",
            "given_name": "G",
            "family_name": "F",
            "directory_opt_out": "false",
        }
        for i in range(n_people)
    ]
    write_csv(folder / "person.csv", people)
    days = [f"2024-09-{d:02d}" for d in range(2, 30)]
    attendance = [
        {
            "person_id": f"q{i}",
            "school_id": "s1",
            "date": days[(i * 7 + k) % len(days)],
            "status": "absent_excused",
        }
        for i in range(n_people)
        for k in range(3)
    ]
    write_csv(folder / "attendance.csv", attendance)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["applied person", "applied attendance", "commit"])
def test_killing_a_load_leaves_the_previous_state(
    warehouse: Warehouse, make_batch: Callable[..., Path], tmp_path: Path, kill_at: str
) -> None:
    warehouse.load_directory(make_batch("base", **TINY))
    before = snapshot(warehouse)
    batch = _big_batch(tmp_path / "big", 20_000)
    marker = tmp_path / "marker"
    kill_when_marked(_LOADER, str(warehouse.settings.home), str(batch), kill_at, str(marker), marker=marker)
    assert snapshot(warehouse) == before
    # The warehouse still works: the same batch loads cleanly afterwards.
    result = warehouse.load_directory(batch)
    assert result.rows_stored == 3 + 20_000 + 60_000 - result.rows_quarantined
    assert warehouse.counts()["person"] == 6 + 20_000


def test_lake_round_trip_reproduces_the_warehouse(
    warehouse: Warehouse, tiny_batch: Path, tmp_path: Path
) -> None:
    warehouse.load_directory(tiny_batch)
    counts = export_lake(warehouse, tmp_path / "lake")
    assert counts == {"organization": 3, "person": 6, "attendance": 4}
    assert sorted(p.name for p in (tmp_path / "lake").iterdir()) == [
        "attendance.parquet",
        "organization.parquet",
        "person.parquet",
    ]
    other = Warehouse(Settings(home=tmp_path / "other"))
    other.init()
    result = other.load_directory(tmp_path / "lake")
    assert result.rows_quarantined == 0
    for table in CANONICAL:
        assert other.checksum(table) == warehouse.checksum(table), table
