"""Arrow tables of the synthetic Canvas semester (private to :mod:`edsight.synth.canvas`).

Turns the dense arrays of :mod:`edsight.synth._canvas_sim` into Arrow tables with compact
types. String columns of the big tables are built as dictionary arrays (both writers consume
them natively, which is much cheaper than materialising millions of strings); the public
schemas in ``SCHEMAS`` say ``string`` and callers cast when they need plain strings.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import pyarrow as pa

from edsight.synth import _canvas_labels as L
from edsight.synth import _canvas_params as P
from edsight.synth import _canvas_sim as S

TABLES: Final[tuple[str, ...]] = (
    "courses",
    "students",
    "assignments",
    "submissions",
    "canvas_analytics",
    "training_data",
)
# The tables that grow with the number of students and are produced chunk by chunk.
BIG_TABLES: Final[tuple[str, ...]] = (
    "students",
    "submissions",
    "canvas_analytics",
    "training_data",
)
N_WEEKS: Final[int] = P.N_WEEKS
HORIZON_WEEKS: Final[int] = P.HORIZON_WEEKS

_TS = pa.timestamp("s")
_STR = pa.string()
SCHEMAS: Final[dict[str, pa.Schema]] = {
    "courses": pa.schema(
        [
            ("course_id", _STR),
            ("name", _STR),
            ("subject", _STR),
            ("difficulty", pa.float64()),
            ("workload", _STR),
        ]
    ),
    "students": pa.schema(
        [
            ("student_id", pa.int64()),
            ("enrollment_date", _TS),
            ("academic_ability", pa.float64()),
            ("time_management", pa.float64()),
            ("persistence", pa.float64()),
            ("external_commitments", _STR),
        ]
    ),
    "assignments": pa.schema(
        [
            ("assignment_id", _STR),
            ("course_id", _STR),
            ("assignment_type", _STR),
            ("due_date", _TS),
            ("due_week", pa.int8()),
            ("points_possible", pa.int16()),
            ("difficulty", pa.float64()),
        ]
    ),
    "submissions": pa.schema(
        [
            ("student_id", pa.int64()),
            ("assignment_id", _STR),
            ("course_id", _STR),
            ("submission_date", _TS),
            ("due_date", _TS),
            ("was_late", pa.bool_()),
            ("days_late", pa.int8()),
            ("score_earned", pa.float64()),
            ("points_possible", pa.int16()),
            ("grade_percentage", pa.float64()),
            ("attempt_count", pa.int8()),
            ("assignment_type", _STR),
        ]
    ),
    "canvas_analytics": pa.schema(
        [
            ("student_id", pa.int64()),
            ("course_id", _STR),
            ("week", pa.int8()),
            ("last_login", _TS),
            ("page_views", pa.int16()),
            ("participations", pa.int16()),
            ("assignments_submitted_week", pa.int8()),
            ("current_grade", pa.float32()),
            ("assignments_missing", pa.int8()),
            ("late_submission_rate", pa.float32()),
            ("discussion_posts", pa.int8()),
            ("quiz_attempts", pa.int8()),
            ("is_missing_week", pa.bool_()),
        ]
    ),
}
LABEL_COLUMNS: Final[tuple[str, ...]] = L.LABELS
SCHEMAS["training_data"] = pa.schema(
    [
        *SCHEMAS["canvas_analytics"],
        pa.field("prediction_week", pa.int8()),
        *(pa.field(name, pa.bool_()) for name in LABEL_COLUMNS),
    ]
)


# --- arrow builders -------------------------------------------------------------------------
def _dict_strings(indices: np.ndarray[Any, Any], values: tuple[str, ...]) -> pa.Array:
    # Dictionary arrays are written natively by both writers; decoded only for pandas output.
    return pa.DictionaryArray.from_arrays(pa.array(indices), pa.array(values, _STR))


def _timestamps(seconds_since_term: np.ndarray[Any, Any], null: np.ndarray[Any, Any]) -> pa.Array:
    values = np.ascontiguousarray(seconds_since_term, dtype=np.int64) + P.TERM_START_EPOCH_S
    n = len(values)
    if not null.any():
        return pa.Array.from_buffers(_TS, n, [None, pa.py_buffer(values)])
    validity = np.packbits(~null, bitorder="little")
    return pa.Array.from_buffers(
        _TS, n, [pa.py_buffer(validity), pa.py_buffer(values)], null_count=int(null.sum())
    )


def _floats(values: np.ndarray[Any, Any], dtype: type[np.floating[Any]]) -> pa.Array:
    """Float array with NaN turned into null (so CSV writes an empty cell)."""
    arr = np.ascontiguousarray(values, dtype=dtype)
    nan = np.isnan(arr)
    if not nan.any():
        return pa.array(arr)
    validity = np.packbits(~nan, bitorder="little")
    return pa.Array.from_buffers(
        pa.from_numpy_dtype(arr.dtype),
        len(arr),
        [pa.py_buffer(validity), pa.py_buffer(arr)],
        null_count=int(nan.sum()),
    )


_ASSIGNMENT_IDS: Final[tuple[str, ...]] = tuple(f"assignment_{i + 1}" for i in range(P.N_ASSIGNMENTS))


def courses_table() -> pa.Table:
    """The fixed 8-course catalogue of the seed."""
    cols = list(zip(*P.COURSE_ROWS, strict=True))
    return pa.Table.from_arrays([pa.array(list(c)) for c in cols], schema=SCHEMAS["courses"])


def assignments_table(catalog: S.Catalog) -> pa.Table:
    """The 64 assignments (ids numbered course by course in catalogue order)."""
    return pa.Table.from_arrays(
        [
            pa.array(list(_ASSIGNMENT_IDS), _STR),
            pa.array([P.COURSE_IDS[c] for c in catalog.course], _STR),
            pa.array([P.ASSIGNMENT_TYPES[t] for t in catalog.type_], _STR),
            _timestamps(catalog.due_s, np.zeros(P.N_ASSIGNMENTS, np.bool_)),
            pa.array(catalog.due_week),
            pa.array(catalog.points),
            pa.array(catalog.difficulty),
        ],
        schema=SCHEMAS["assignments"],
    )


def _with_dict_schema(name: str, arrays: list[pa.Array]) -> pa.Table:
    # The on-disk/pandas schema says string; chunks carry dictionary-encoded equivalents.
    fields = [
        pa.field(f.name, arr.type) if pa.types.is_dictionary(arr.type) else f
        for f, arr in zip(SCHEMAS[name], arrays, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def chunk_tables(seed: int, catalog: S.Catalog, chunk: int, first_id: int, n: int) -> dict[str, pa.Table]:
    """Simulate one fixed chunk of students and build its four big tables."""
    students = S.make_students(S.chunk_rng(seed, chunk, S.STAGE_STUDENTS), first_id, n)
    pairs = S.make_enrollments(S.chunk_rng(seed, chunk, S.STAGE_ENROLLMENTS), n)
    subs = S.make_submissions(S.chunk_rng(seed, chunk, S.STAGE_SUBMISSIONS), catalog, students, pairs)
    events = S.events_from_submissions(subs, catalog, len(pairs))
    weekly = S.simulate_weeks(
        students.ability[pairs.student],
        students.persistence[pairs.student],
        events,
        S.RngNoise(S.chunk_rng(seed, chunk, S.STAGE_WEEKS)),
    )
    pair_sid = pairs.student + first_id
    tables = {
        "students": _students_arrow(students),
        "submissions": _submissions_arrow(catalog, pairs, pair_sid, subs),
    }
    tables.update(_weekly_arrow(pairs, pair_sid, weekly))
    return tables


def _students_arrow(students: S.Students) -> pa.Table:
    n = len(students)
    return _with_dict_schema(
        "students",
        [
            pa.array(np.arange(students.first_id, students.first_id + n, dtype=np.int64)),
            _timestamps(students.enrollment_day.astype(np.int64) * P.DAY_S, np.zeros(n, bool)),
            pa.array(students.ability),
            pa.array(students.time_management),
            pa.array(students.persistence),
            _dict_strings(students.commitments, P.COMMITMENT_LEVELS),
        ],
    )


def _submissions_arrow(
    catalog: S.Catalog, pairs: S.Pairs, pair_sid: np.ndarray[Any, Any], subs: S.Submissions
) -> pa.Table:
    k = P.ASSIGNMENTS_PER_COURSE
    a = subs.assignment
    return _with_dict_schema(
        "submissions",
        [
            pa.array(np.repeat(pair_sid, k)),
            _dict_strings(a, _ASSIGNMENT_IDS),
            _dict_strings(np.repeat(pairs.course, k), P.COURSE_IDS),
            _timestamps(subs.time_s, ~subs.submitted),
            _timestamps(catalog.due_s[a], np.zeros(len(a), np.bool_)),
            pa.array(subs.was_late),
            pa.array(subs.days_late),
            pa.array(subs.score),
            pa.array(catalog.points[a]),
            pa.array(subs.grade),
            pa.array(subs.attempts),
            _dict_strings(catalog.type_[a], P.ASSIGNMENT_TYPES),
        ],
    )


def _weekly_arrow(pairs: S.Pairs, pair_sid: np.ndarray[Any, Any], weekly: S.Weekly) -> dict[str, pa.Table]:
    n_pairs = len(pairs)
    weeks = np.arange(1, N_WEEKS + 1, dtype=np.int8)

    def columns(width: int) -> list[pa.Array]:
        def cut(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
            # Week-major (16, n_pairs) -> rows ordered by pair, then week.
            return np.ascontiguousarray(a[:width].T).ravel()

        login = cut(weekly.last_login_s)
        return [
            pa.array(np.repeat(pair_sid, width)),
            _dict_strings(np.repeat(pairs.course, width), P.COURSE_IDS),
            pa.array(np.tile(weeks[:width], n_pairs)),
            _timestamps(login, login < 0),
            pa.array(cut(weekly.page_views)),
            pa.array(cut(weekly.participations)),
            pa.array(cut(weekly.assignments_submitted_week)),
            _floats(cut(weekly.current_grade), np.float32),
            pa.array(cut(weekly.assignments_missing)),
            pa.array(cut(weekly.late_submission_rate)),
            pa.array(cut(weekly.discussion_posts)),
            pa.array(cut(weekly.quiz_attempts)),
            pa.array(cut(weekly.is_missing_week)),
        ]

    analytics = _with_dict_schema("canvas_analytics", columns(N_WEEKS))
    width = N_WEEKS - HORIZON_WEEKS
    # Labels read the float32 grades exactly as a consumer of canvas_analytics will.
    eligible, labels = L.dense_labels(
        weekly.current_grade.astype(np.float64),
        weekly.page_views,
        weekly.participations,
        weekly.assignments_missing,
        np.ones((N_WEEKS, n_pairs), np.bool_),
        HORIZON_WEEKS,
    )
    if not (bool(eligible[:width].all()) and not bool(eligible[width:].any())):
        raise AssertionError("label horizon bookkeeping is inconsistent")  # pragma: no cover
    training_cols = columns(width)
    training_cols.append(pa.array(np.tile(weeks[:width], n_pairs)))
    for name in LABEL_COLUMNS:
        training_cols.append(pa.array(np.ascontiguousarray(labels[name][:width].T).ravel()))
    training = _with_dict_schema("training_data", training_cols)
    return {"canvas_analytics": analytics, "training_data": training}
