"""Row preparation shared by the assessment and Canvas Data 2 file connectors.

Source files are read into :class:`~edsight.ingest.files.RawTable` objects and
prepared here before validation: headers matched to the declared names
(case-insensitively, with legacy aliases), common alternative spellings turned
into the declared form (US dates, ``K`` grades, ``Z`` timestamps, the case of a
vocabulary), and rows that cannot be attached to the warehouse (an unknown
student, an unknown course) moved aside with a reason. Moved rows travel as the
``malformed`` rows of their file, so the validator quarantines them naming the
file, the row and the column, and ``read = stored + quarantined`` still holds.

Values a row was rejected for are echoed only when they identify nobody (a
term name, a subject); identifiers stay in the quarantined record only.
Everything is vectorised over Arrow arrays; Python loops run over distinct
values or over rejected rows only.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeAlias

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pjson

from edsight.errors import InvalidInput
from edsight.ingest.files import ROW_COL, MalformedRow, RawTable
from edsight.ingest.ids import edsight_id
from edsight.schema import Table
from edsight.sql import quote_ident

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

# For a row that stands for a group of source rows: the group's first row, as one (file, row)
# pair, so that no two mapped rows share a pair (the validator matches rows by it).
FIRST_ROW = "arg_min(__file, (__file, __row)) AS __file, arg_min(__row, (__file, __row)) AS __row"
MAX_LINE_BYTES = 1 << 20  # a JSON line past this is rejected, not parsed (hostile or broken export)
_MAX_RECORD_CHARS = 2000
_MAX_ECHO = 40


# -- reading -----------------------------------------------------------------------


def read_bytes(path: Path) -> bytes:
    """The bytes of a file, gunzipped when its name ends in ``.gz``."""
    data = path.read_bytes()
    if path.suffix.lower() != ".gz":
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise InvalidInput(f"{path.name}: truncated or corrupt gzip file ({exc})") from exc


def read_jsonl(path: Path, fields: Mapping[str, pa.DataType], *, label: str | None = None) -> RawTable:
    """Read JSON lines, keeping the dotted ``fields`` (``key.id``, ``value.score``) as text.

    The fast path parses the whole file with Arrow against the expected types.
    When that fails (a bad line, a value of another type, a line past
    :data:`MAX_LINE_BYTES`), the file is parsed line by line so that only the
    bad lines are set aside, each with its reason. Rows are numbered by line.
    """
    data = read_bytes(path)
    name = Path(label or path.name)
    regular = b"\n\n" not in data and not data.startswith(b"\n") and not data.startswith(b"\xef\xbb\xbf")
    if regular and data.strip():
        try:
            return _read_jsonl_fast(name, data, fields)
        except pa.ArrowInvalid as exc:
            log.info("%s: not uniform, parsing line by line", name)
            log.debug("%s: %s", name, str(exc)[:200])
    return _read_jsonl_lines(name, data, fields)


def _nested_schema(fields: Mapping[str, pa.DataType]) -> pa.Schema:
    groups: dict[str, list[pa.Field]] = {}
    for dotted, dtype in fields.items():
        parent, _, child = dotted.partition(".")
        groups.setdefault(parent, []).append(pa.field(child, dtype))
    return pa.schema([pa.field(parent, pa.struct(children)) for parent, children in groups.items()])


def _read_jsonl_fast(name: Path, data: bytes, fields: Mapping[str, pa.DataType]) -> RawTable:
    table = pjson.read_json(
        pa.BufferReader(data),
        read_options=pjson.ReadOptions(use_threads=True, block_size=MAX_LINE_BYTES),
        parse_options=pjson.ParseOptions(
            explicit_schema=_nested_schema(fields), unexpected_field_behavior="ignore"
        ),
    )
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    if table.num_rows != lines:
        raise pa.ArrowInvalid(f"{table.num_rows} objects on {lines} lines")
    flat = table.flatten()
    columns = [pc.cast(flat.column(f), pa.string()) for f in fields]
    rows = pa.array(np.arange(1, table.num_rows + 1, dtype=np.int64))
    return RawTable(name, pa.table([rows, *columns], names=[ROW_COL, *fields]))


def _read_jsonl_lines(name: Path, data: bytes, fields: Mapping[str, pa.DataType]) -> RawTable:
    split = [(f, *f.partition(".")[::2]) for f in fields]
    values: dict[str, list[str | None]] = {f: [] for f in fields}
    rows: list[int] = []
    malformed: list[MalformedRow] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        record, problem = _parse_line(line, split)
        if problem is not None:
            text = line[:500].decode("utf-8", "replace")
            malformed.append(MalformedRow(number, problem, text))
            continue
        rows.append(number)
        for f in fields:
            values[f].append(record[f])
    if malformed:
        log.info("%s: %d lines set aside", name, len(malformed))
    arrays = [pa.array(values[f], pa.string()) for f in fields]
    table = pa.table([pa.array(rows, pa.int64()), *arrays], names=[ROW_COL, *fields])
    return RawTable(name, table, malformed)


def _parse_line(line: bytes, split: list[tuple[str, str, str]]) -> tuple[dict[str, str | None], str | None]:
    if len(line) > MAX_LINE_BYTES:
        return {}, f"line is {len(line):,} bytes, longer than the {MAX_LINE_BYTES:,}-byte limit"
    if line.startswith(b"\xef\xbb\xbf"):
        line = line[3:]
    try:
        obj = json.loads(line)
    except RecursionError:
        return {}, "JSON nested too deeply"
    except ValueError as exc:  # includes UnicodeDecodeError
        return {}, f"not valid JSON ({str(exc)[:80]})"
    if not isinstance(obj, dict):
        return {}, f"line is a JSON {_JSON_KINDS.get(type(obj), 'value')}, expected an object"
    record: dict[str, str | None] = {}
    for dotted, parent, child in split:
        part = obj.get(parent)
        if part is None:
            record[dotted] = None
            continue
        if not isinstance(part, dict):
            return {}, f"'{parent}' is not an object"
        value = part.get(child)
        if isinstance(value, dict | list):  # kept as JSON text: validation reports it against the type
            record[dotted] = json.dumps(value)
        elif value is None:
            record[dotted] = None
        elif isinstance(value, bool):
            record[dotted] = "true" if value else "false"
        elif isinstance(value, float):
            record[dotted] = _float_text(value)
        else:
            record[dotted] = str(value)
    return record, None


_JSON_KINDS = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _float_text(value: float) -> str:
    """A float as Arrow writes it (``9.0`` -> ``9``), so both JSON paths give the same text."""
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


# -- columns -------------------------------------------------------------------------


def keep_declared(
    raw: RawTable, decl: Table, aliases: Mapping[str, str] | None = None
) -> tuple[RawTable, list[str]]:
    """Rename headers to the declared names (case-insensitively, or by alias) and drop the rest.

    Returns the prepared table and the headers that were not used. When both a
    current name and its legacy alias are present, the current name wins. Blank
    text becomes null.
    """
    index = {c.lower(): c for c in decl.column_names}
    for old, new in (aliases or {}).items():
        index.setdefault(old.lower(), new)
    chosen: dict[str, str] = {}
    ignored: list[str] = []
    for header in raw.columns:
        target = index.get(header.strip().lower())
        if target is None:
            ignored.append(header)
            continue
        previous = chosen.get(target)
        if previous is not None and previous.strip().lower() == target.lower():
            ignored.append(header)
            continue
        if previous is not None:
            ignored.append(previous)
        chosen[target] = header
    table = raw.data.select([ROW_COL, *chosen.values()]).rename_columns([ROW_COL, *chosen])
    # Exports quote every cell, so a missing value often arrives as "" rather than empty.
    for i, name in enumerate(table.column_names):
        values = table.column(i)
        if name != ROW_COL and values.type == pa.string():
            blank = pc.equal(pc.utf8_trim_whitespace(values), "")
            table = table.set_column(i, name, pc.if_else(blank, pa.scalar(None, pa.string()), values))
    return RawTable(raw.path, table, list(raw.malformed)), ignored


def column(raw: RawTable, name: str) -> pa.ChunkedArray | None:
    """A column of ``raw`` as text, or None when the file lacks it."""
    if name not in raw.data.column_names:
        return None
    values = raw.data.column(name)
    return values if values.type == pa.string() else pc.cast(values, pa.string())


def with_column(raw: RawTable, name: str, values: pa.Array | pa.ChunkedArray) -> RawTable:
    """``raw`` with column ``name`` replaced (or appended)."""
    data = raw.data
    if name in data.column_names:
        data = data.set_column(data.column_names.index(name), name, values)
    else:
        data = data.append_column(name, values)
    return RawTable(raw.path, data, list(raw.malformed))


Reasons: TypeAlias = str | Sequence[str] | pa.Array | pa.ChunkedArray | Callable[[int], str]


def reject(raw: RawTable, mask: pa.Array | pa.ChunkedArray, reason: Reasons) -> RawTable:
    """Move the rows where ``mask`` holds to the malformed rows, each with its reason.

    ``reason`` is one reason for all, one per row of ``raw`` (a sequence or an
    array), or a function of the row's index, called for the rejected rows only.
    """
    mask = pc.fill_null(mask, False)
    if not pc.any(mask).as_py():
        return raw
    bad = raw.data.filter(mask)
    numbers = bad.column(ROW_COL).to_pylist()
    records = bad.drop_columns([ROW_COL]).to_pylist()
    if isinstance(reason, str):
        reasons: list[str] = [reason] * len(numbers)
    elif callable(reason):
        reasons = [reason(int(i)) for i in np.flatnonzero(np.asarray(mask.to_numpy(zero_copy_only=False)))]
    else:
        values = reason if isinstance(reason, pa.Array | pa.ChunkedArray) else pa.array(reason, pa.string())
        reasons = [str(r) for r in pc.filter(values, mask).to_pylist()]
    moved = [
        MalformedRow(number, why, json.dumps(record, default=str)[:_MAX_RECORD_CHARS])
        for number, why, record in zip(numbers, reasons, records, strict=True)
    ]
    malformed = sorted([*raw.malformed, *moved], key=lambda m: m.row)
    return RawTable(raw.path, raw.data.filter(pc.invert(mask)), malformed)


def drop(raw: RawTable, mask: pa.Array | pa.ChunkedArray) -> tuple[RawTable, int]:
    """Remove the rows where ``mask`` holds (rows skipped as unchanged); return how many went."""
    mask = pc.fill_null(mask, False)
    n = int(pc.sum(mask).as_py() or 0)
    if n == 0:
        return raw, 0
    return RawTable(raw.path, raw.data.filter(pc.invert(mask)), list(raw.malformed)), n


def echo(value: object) -> str:
    """A short, quoted rendering of a non-identifying value for a reason."""
    text = str(value)
    return repr(text if len(text) <= _MAX_ECHO else text[:_MAX_ECHO] + "...")


# -- spellings -------------------------------------------------------------------------


def normalise_vocabulary(values: pa.ChunkedArray, spellings: Mapping[str, str]) -> pa.ChunkedArray:
    """Map values, ignoring case and surrounding spaces, to their declared spelling.

    ``spellings`` maps lower-case variants to the declared value; other values
    are left as they are, so that validation reports them.
    """
    keys = pa.array([k.lower() for k in spellings], pa.string())
    targets = pa.array(list(spellings.values()), pa.string())
    index = pc.index_in(pc.utf8_lower(pc.utf8_trim_whitespace(values)), value_set=keys)
    return pc.if_else(pc.is_null(index), values, pc.take(targets, index))


def dates_to_iso(values: pa.ChunkedArray, fmt: str = "%m/%d/%Y") -> pa.ChunkedArray:
    """Dates written as ``fmt`` (US ``9/16/2023`` by default) -> ``2023-09-16``; others unchanged."""
    parsed = pc.strptime(pc.utf8_trim_whitespace(values), format=fmt, unit="s", error_is_null=True)
    return pc.if_else(pc.is_null(parsed), values, pc.strftime(parsed, format="%Y-%m-%d"))


GRADE_WORDS: Mapping[str, str] = {
    "k": "0",
    "kg": "0",
    "kindergarten": "0",
    "pk": "-1",
    "prek": "-1",
    "pre-k": "-1",
    "pre-kindergarten": "-1",
}


def grades_to_numbers(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Grade words (``K``, ``KG``, ``PK``) -> -1/0; numbers as they are."""
    return normalise_vocabulary(values, GRADE_WORDS)


_UTC_SUFFIX = r"(Z|[+-]00:?00)$"
_OFFSET_SUFFIX = r"\d[+-]\d\d:?\d\d$"


def utc_timestamps(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """ISO timestamps with a zone -> naive UTC text; others unchanged (validation reports them).

    DuckDB's cast to TIMESTAMP drops a zone offset instead of applying it, so
    offsets other than UTC are applied here (rare in exports, so row by row).
    """
    trimmed = pc.utf8_trim_whitespace(values)
    utc = pc.match_substring_regex(trimmed, _UTC_SUFFIX)
    out = pc.if_else(utc, pc.replace_substring_regex(trimmed, _UTC_SUFFIX, ""), values)
    offset = pc.and_(pc.match_substring_regex(trimmed, _OFFSET_SUFFIX), pc.invert(utc))
    if not pc.any(offset).as_py():
        return out
    texts = out.to_pylist()
    for i in np.flatnonzero(pc.fill_null(offset, False).to_numpy(zero_copy_only=False)):
        try:
            moment = datetime.fromisoformat(str(texts[i]))
        except ValueError:
            continue
        texts[i] = moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
    return pa.chunked_array([pa.array(texts, pa.string())])


def to_timestamps(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Naive ISO text -> timestamps; null where the text is not one."""
    ok = pc.match_substring_regex(values, r"^\d{4}-\d\d-\d\d([ T]\d\d:\d\d(:\d\d(\.\d{1,9})?)?)?$")
    kept = pc.if_else(ok, values, pa.scalar(None, pa.string()))
    try:
        return pc.cast(kept, pa.timestamp("us"))
    except pa.ArrowInvalid:  # e.g. month 13: parse the survivors one by one
        out: list[datetime | None] = []
        for text in kept.to_pylist():
            try:
                out.append(datetime.fromisoformat(text) if text else None)
            except ValueError:
                out.append(None)
        return pa.chunked_array([pa.array(out, pa.timestamp("us"))])


def integer_text(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Canonical decimal text of integer ids (``007`` -> ``7``); null for anything else."""
    trimmed = pc.utf8_trim_whitespace(values)
    ok = pc.match_substring_regex(trimmed, r"^\d{1,18}$")
    digits = pc.if_else(ok, trimmed, pa.scalar(None, pa.string()))
    return pc.cast(pc.cast(digits, pa.int64()), pa.string())


def derived_ids(system: str, entity: str, source_ids: pa.ChunkedArray) -> pa.ChunkedArray:
    """:func:`edsight.ingest.ids.edsight_id` of each source id (null stays null)."""
    distinct = pc.unique(source_ids.drop_null())
    ids = pa.array([edsight_id(system, entity, v) for v in distinct.to_pylist()], pa.string())
    return pc.take(ids, pc.index_in(source_ids, value_set=distinct))


# -- the warehouse as it stands --------------------------------------------------------


def _probe(con: duckdb.DuckDBPyConnection, probe: pa.Table, sql: str, params: list[object]) -> pa.Table:
    con.register("_edsight_probe", probe)
    try:
        return con.sql(sql, params=params).to_arrow_table()
    finally:
        con.unregister("_edsight_probe")


def _lookup(source_ids: pa.ChunkedArray, keys: pa.Array, values: pa.Array) -> pa.ChunkedArray:
    return pc.take(values, pc.index_in(source_ids, value_set=keys))


def existing_ids(
    con: duckdb.DuckDBPyConnection,
    system: str,
    entity: str,
    source_ids: pa.ChunkedArray,
    table: str,
    key: str,
) -> pa.ChunkedArray:
    """The edsight id of each source id whose row is already in the warehouse, else null.

    An ``id_map`` entry of ``system`` wins (another connector may have linked the
    source id to an existing row); otherwise the derived id counts when ``table``
    has a row with it. ``table`` and ``key`` are canonical names.
    """
    distinct = pc.unique(source_ids.drop_null())
    probe = pa.table({"source_id": distinct, "derived": derived_ids(system, entity, distinct)})
    t, k = quote_ident(table), quote_ident(key)
    found = _probe(
        con,
        probe,
        f"SELECT p.source_id, coalesce(a.{k}, b.{k}) AS edsight_id FROM _edsight_probe p "  # noqa: S608
        "LEFT JOIN id_map m ON m.source_system = ? AND m.entity = ? AND m.source_id = p.source_id "
        f"LEFT JOIN {t} a ON a.{k} = m.edsight_id LEFT JOIN {t} b ON b.{k} = p.derived",
        [system, entity],
    )
    return _lookup(source_ids, found.column("source_id").combine_chunks(), found.column("edsight_id"))


STUDENT_KEYS = ("local_id", "state_id")


def students(
    con: duckdb.DuckDBPyConnection,
    system: str,
    chain: Sequence[tuple[str, pa.ChunkedArray | None]],
    *,
    any_role: bool = False,
) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """Resolve students by the identifiers in ``chain``, first match wins.

    Each step is ``("id_map", ids)`` (an ``id_map`` entry of ``system``),
    ``("local_id", ids)`` or ``("state_id", ids)`` (the person's SIS number or
    state id; students only unless ``any_role``). Returns the person ids (null
    when unresolved) and whether an unresolved identifier matched several people.
    """
    resolved: pa.ChunkedArray | None = None
    ambiguous: pa.ChunkedArray | None = None
    for kind, ids in chain:
        if ids is None:
            continue
        distinct = pc.unique(ids.drop_null())
        probe = pa.table({"source_id": distinct})
        if kind == "id_map":
            sql = (
                "SELECT p.source_id, min(m.edsight_id) AS person_id, count(*) AS n FROM _edsight_probe p "
                "JOIN id_map m ON m.source_system = ? AND m.entity = 'person' AND m.source_id = p.source_id "
                "JOIN person s ON s.person_id = m.edsight_id GROUP BY p.source_id"
            )
            params: list[object] = [system]
        elif kind in STUDENT_KEYS:
            sql = (
                "SELECT p.source_id, min(s.person_id) AS person_id, count(*) AS n FROM _edsight_probe p "  # noqa: S608
                f"JOIN person s ON s.{quote_ident(kind)} = p.source_id "
                f"AND (s.role = 'student' OR {'true' if any_role else 'false'}) "
                "GROUP BY p.source_id"
            )
            params = []
        else:
            raise ValueError(f"unknown student key {kind!r}")
        found = _probe(con, probe, sql, params)
        keys = found.column("source_id").combine_chunks()
        unique = pc.if_else(
            pc.equal(found.column("n"), 1), found.column("person_id"), pa.scalar(None, pa.string())
        )
        step = _lookup(ids, keys, unique.combine_chunks())
        many = pc.fill_null(pc.greater(_lookup(ids, keys, found.column("n").combine_chunks()), 1), False)
        resolved = step if resolved is None else pc.coalesce(resolved, step)
        ambiguous = many if ambiguous is None else pc.or_(ambiguous, many)
    if resolved is None or ambiguous is None:
        raise ValueError("no student identifier to resolve by")
    return resolved, pc.and_(ambiguous, pc.is_null(resolved))


# -- the batch id ------------------------------------------------------------------------


def content_hash(kind: str, tables: Iterable[tuple[str, RawTable]], extra: bytes = b"") -> str:
    """SHA-256 of the prepared rows (values, row numbers, set-aside rows) and ``extra``.

    Hashing what will be loaded, rather than the file bytes alone, gives a new
    batch id when the warehouse changed how rows resolve (a student rostered
    since the last run), so the same file is loaded again then, and only then.
    """
    digest = hashlib.sha256(kind.encode())
    for name, raw in tables:
        digest.update(b"\0" + name.encode() + b"\0" + raw.name.encode() + b"\0")
        digest.update(raw.data.schema.serialize())
        for batch in raw.data.to_batches():
            digest.update(batch.serialize())
        for bad in raw.malformed:
            digest.update(f"{bad.row}\0{bad.reason}\0{bad.text}\0".encode())
    digest.update(extra)
    return digest.hexdigest()
