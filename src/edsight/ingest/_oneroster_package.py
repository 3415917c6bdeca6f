"""Opening a OneRoster CSV package (a .zip or a folder): manifest, files, header names.

A package is read whole before anything is loaded, so a truncated zip, a file in
the wrong encoding or a manifest that names a missing file stops the load with
one clear :class:`~edsight.errors.InvalidInput` and nothing is stored.
"""

from __future__ import annotations

import csv
import logging
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edsight.errors import InvalidInput
from edsight.ingest._oneroster_common import blank_to_null, content_digest
from edsight.ingest._oneroster_tables import MODES, OTHER_FILES, VERSIONS, declared_columns, files_for
from edsight.ingest.files import ROW_COL, RawTable, read_table_file

log = logging.getLogger(__name__)

MANIFEST = "manifest.csv"
# A zip may not unpack to more than this, and no large member may compress better than
# MAX_RATIO:1 (real CSV compresses 5-20:1; a zip bomb 1000:1).
MAX_UNPACKED_BYTES = 16 << 30
MAX_RATIO = 200
_RATIO_CHECK_BYTES = 16 << 20

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Manifest:
    """What ``manifest.csv`` says: the version, each file's mode, the source system."""

    version: str
    modes: dict[str, str]  # roster file -> bulk | delta (files marked absent are left out)
    system_name: str | None = None
    system_code: str | None = None
    properties: dict[str, str] = field(default_factory=dict)


@dataclass
class Package:
    """A read package: its manifest, the roster files as raw tables, and notes on the rest."""

    source: Path
    manifest: Manifest
    files: dict[str, RawTable]
    content_hash: str
    notes: list[str] = field(default_factory=list)


def read_package(source: Path, *, encoding: str = "utf-8", progress: Progress | None = None) -> Package:
    """Read the manifest and every roster file it lists from a .zip or a folder."""
    if source.is_dir():
        members = {p.name: p for p in sorted(source.iterdir()) if p.is_file()}
        return _read_members(
            source, members, content_digest("oneroster", members.values()), encoding, progress
        )
    if not source.is_file():
        raise InvalidInput(f"{source}: no such file or folder")
    if not zipfile.is_zipfile(source):
        raise InvalidInput(
            f"{source.name}: not a zip archive (truncated or corrupt?); a OneRoster export is a "
            "zip of CSV files or a folder of them"
        )
    with tempfile.TemporaryDirectory(prefix="edsight-oneroster-") as tmp:
        members = _unzip(source, Path(tmp))
        return _read_members(source, members, content_digest("oneroster", [source]), encoding, progress)


def _unzip(source: Path, into: Path) -> dict[str, Path]:
    """Extract the CSV members (by base name, never by their stored path) into ``into``."""
    wanted = {f"{n.lower()}.csv" for n in (*files_for("1.2"), *OTHER_FILES, "manifest")}
    out: dict[str, Path] = {}
    try:
        with zipfile.ZipFile(source) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir() and Path(i.filename).name.lower() in wanted]
            if sum(i.file_size for i in infos) > MAX_UNPACKED_BYTES:
                raise InvalidInput(
                    f"{source.name}: unpacks to more than {MAX_UNPACKED_BYTES >> 30} GiB; refusing to extract"
                )
            for info in infos:
                name = Path(info.filename).name
                if name in out:
                    raise InvalidInput(f"{source.name}: holds {name} twice ({info.filename})")
                ratio = info.file_size / max(info.compress_size, 1)
                if info.file_size > _RATIO_CHECK_BYTES and ratio > MAX_RATIO:
                    raise InvalidInput(
                        f"{source.name}: member {info.filename} compresses {ratio:.0f}:1, which looks like "
                        "a zip bomb; refusing to extract"
                    )
                target = into / name
                try:
                    with zf.open(info) as src, target.open("wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
                    raise InvalidInput(
                        f"{source.name}: member {info.filename} cannot be read "
                        f"(truncated or corrupt zip): {exc}"
                    ) from exc
                out[name] = target
    except zipfile.BadZipFile as exc:
        raise InvalidInput(f"{source.name}: corrupt zip archive: {exc}") from exc
    return out


def _read_members(
    source: Path, members: dict[str, Path], digest: str, encoding: str, progress: Progress | None
) -> Package:
    by_lower = {name.lower(): path for name, path in members.items()}
    manifest_path = by_lower.get(MANIFEST)
    if manifest_path is None:
        raise InvalidInput(
            f"{source.name}: no {MANIFEST}; a OneRoster package must have one "
            "(propertyName,value rows naming the version and each file's mode)"
        )
    manifest = read_manifest(manifest_path, source.name)
    notes: list[str] = []
    files: dict[str, RawTable] = {}
    for name in files_for(manifest.version):
        path = by_lower.get(f"{name.lower()}.csv")
        mode = manifest.modes.get(name)
        if mode is None:
            if path is not None:
                notes.append(f"{path.name}: the manifest marks it absent (or omits it); not read")
            continue
        if path is None:
            raise InvalidInput(
                f"{source.name}: {MANIFEST} says file.{name} = {mode}, but the package has no {name}.csv"
            )
        if progress:
            progress(f"reading {name}.csv")
        files[name] = _normalise_header(read_table_file(path, encoding), name, manifest.version, notes)
    for name in OTHER_FILES:
        path = by_lower.get(f"{name.lower()}.csv")
        if path is not None or name in manifest.modes:
            notes.append(f"{name}.csv: gradebook and resource files are not read by the roster connector")
    if not files:
        notes.append(f"{MANIFEST}: no roster file is marked bulk or delta; nothing to load")
    return Package(source, manifest, files, digest, notes)


def read_manifest(path: Path, where: str) -> Manifest:
    """Parse ``manifest.csv`` (``propertyName,value``) into a :class:`Manifest`."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{where}: {MANIFEST} is not UTF-8 text") from exc
    except csv.Error as exc:
        raise InvalidInput(f"{where}: {MANIFEST} is not valid CSV: {exc}") from exc
    if not rows or [c.strip() for c in rows[0][:2]] != ["propertyName", "value"]:
        raise InvalidInput(f"{where}: {MANIFEST} must start with the header propertyName,value")
    props: dict[str, str] = {}
    for number, row in enumerate(rows[1:], start=1):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise InvalidInput(f"{where}: {MANIFEST} row {number} has {len(row)} fields, expected 2")
        key, value = row[0].strip(), row[1].strip()
        if key in props:
            raise InvalidInput(f"{where}: {MANIFEST} row {number} repeats property {key!r}")
        props[key] = value
    version = props.get("oneroster.version")
    if version not in VERSIONS:
        raise InvalidInput(
            f"{where}: {MANIFEST} oneroster.version is {version!r}; edsight reads OneRoster "
            f"{' and '.join(VERSIONS)}"
        )
    modes: dict[str, str] = {}
    known = {n.lower(): n for n in (*files_for(version), *OTHER_FILES)}
    for key, value in props.items():
        if not key.startswith("file."):
            continue
        mode = value.lower()
        if mode not in (*MODES, "absent"):
            raise InvalidInput(f"{where}: {MANIFEST} {key} = {value!r}; expected bulk, delta or absent")
        name = known.get(key[5:].lower())
        if name is not None and mode != "absent":
            modes[name] = mode
    return Manifest(
        version=version,
        modes=modes,
        system_name=props.get("source.systemName") or None,
        system_code=props.get("source.systemCode") or None,
        properties=props,
    )


def _normalise_header(raw: RawTable, name: str, version: str, notes: list[str]) -> RawTable:
    """Match header names to the declaration regardless of case; drop columns the binding lacks."""
    declared = {c.lower(): c for c in declared_columns(name, version)}
    keep: list[str] = [ROW_COL]
    rename: list[str] = [ROW_COL]
    dropped: list[str] = []
    for column in raw.columns:
        target = declared.get(column.strip().lower())
        if target is None or target in rename:
            dropped.append(column)
            continue
        keep.append(column)
        rename.append(target)
    if dropped:
        shown = ", ".join(repr(c) for c in dropped[:10])
        notes.append(f"{raw.name}: column(s) {shown} are not part of OneRoster {version} {name}.csv; ignored")
    data = raw.data.select(keep).rename_columns(rename)
    return blank_to_null(RawTable(raw.path, data, raw.malformed))
