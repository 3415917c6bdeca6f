"""Realised-rate metrics and table emission for one simulated school year (private)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from edsight.schema import EXIT_TYPES
from edsight.synth import _district_arrow as ar
from edsight.synth import _district_model as m
from edsight.synth._district_daily import SEVERITY_NAMES, STATUS_NAMES, Attendance
from edsight.synth._district_sections import TERM_FALL, TERM_SPRING, SectionPlan

if TYPE_CHECKING:
    from edsight.synth._district_sim import DistrictSim, Emit
    from edsight.synth._district_year import Year

# Exit codes index the schema's own list of exit types.
PROMOTED, RETAINED, TRANSFERRED, MOVED, GRADUATED, DROPPED = range(6)
assert EXIT_TYPES[GRADUATED] == "graduated" and EXIT_TYPES[DROPPED] == "dropped_out"  # noqa: PT018
LETTERS = ("A", "B", "C", "D", "F")
CHUNK_ROWS = 2_000_000  # rows per Arrow chunk of the big tables: bounds peak memory


# ------------------------------------------------------------------------- metrics
def _rate(num: float, den: float) -> float | None:
    return round(num / den, 4) if den else None


def _slices(n: int) -> list[slice]:
    """Row ranges of at most CHUNK_ROWS (one empty slice when n == 0)."""
    return [slice(lo, lo + CHUNK_ROWS) for lo in range(0, max(n, 1), CHUNK_ROWS)]


def year_metrics(
    sim: DistrictSim,
    y: Year,
    att: Attendance,
    enrolled_days: np.ndarray,
    grades: dict[str, np.ndarray],
    tests: dict[str, np.ndarray],
    exit_type: np.ndarray,
    n_incidents: int,
) -> dict[str, Any]:
    stu = sim.students
    n = len(y.roster)
    counted = enrolled_days >= m.CHRONIC_MIN_DAYS
    chronic = att.n_absent >= m.CHRONIC_THRESHOLD * enrolled_days
    first9 = (y.grade == 9) & (stu["cohort"][y.roster] == y.sy + 3)
    both = first9 & grades["graded_fall"] & grades["graded_spring"]
    on_track = both & (grades["hs_credits"] >= 5.0) & (grades["core_fails"] <= 1)
    hsg = grades["hs_graded"]
    prof = {
        subj: _rate(
            float(np.sum(tests["level"][tests["subject"] == s] >= 3)),
            float(np.sum(tests["subject"] == s)),
        )
        for s, subj in enumerate(m.SUBJECTS)
    }
    tested_rows = np.isin(y.grade, m.TESTED_GRADES)
    at_end = y.exit_kind == 0
    retained = exit_type == RETAINED
    in_hs = y.grade >= 9
    return {
        "school_year": y.sy,
        "fall_enrollment": y.n_fall,
        "enrolled_any_time": n,
        "midyear_entrants": n - y.n_fall,
        "midyear_transfers_out": int(np.sum(y.exit_kind == TRANSFERRED)),
        "moves_within_district": int(np.sum(y.move_day < m.N_DAYS)),
        "dropouts": int(np.sum(y.exit_kind == DROPPED)),
        "dropout_rate_grades_9_12": _rate(
            float(np.sum(in_hs & (y.exit_kind == DROPPED))), float(np.sum(in_hs))
        ),
        "graduates": int(np.sum(exit_type == GRADUATED)),
        "retention_rate": _rate(
            float(np.sum(retained & (y.grade < 12))), float(np.sum(at_end & (y.grade < 12)))
        ),
        "chronic_absence_rate": _rate(float(np.sum(chronic & counted)), float(np.sum(counted))),
        "mean_absence_rate": _rate(float(att.n_absent.sum()), float(enrolled_days.sum())),
        "tardy_rate": _rate(float(np.sum(att.status == 2)), float(enrolled_days.sum())),
        "incidents_per_100_students": _rate(100.0 * n_incidents, float(n)),
        "hs_semester_f_rate": _rate(float(np.sum(hsg & (grades["letter"] == 4))), float(np.sum(hsg))),
        "ninth_grade_on_track_rate": _rate(float(on_track.sum()), float(both.sum())),
        "proficient_rate": prof,
        "test_participation_rate": _rate(float(len(tests["pos"])), 2.0 * float(np.sum(tested_rows))),
    }


# ------------------------------------------------------------------------- emission
def emit_year(
    sim: DistrictSim,
    y: Year,
    emit: Emit,
    plan: SectionPlan,
    att: Attendance,
    incidents: tuple[np.ndarray, np.ndarray, np.ndarray],
    grades: dict[str, np.ndarray],
    tests: dict[str, np.ndarray],
    exit_type: np.ndarray,
    segs: tuple[np.ndarray, ...],
) -> None:
    seg_pos, seg_school, seg_grade, seg_start, seg_end = segs
    n = len(y.roster)
    cal = y.cal
    sid = sim.student_ids(y.roster)
    tid = sim.teacher_ids()
    mover_first = np.zeros(len(seg_pos), bool)
    mover_first[:n] = y.move_day < m.N_DAYS
    seg_exit = np.where(mover_first, MOVED, exit_type[seg_pos])
    emit(
        "school_enrollment",
        ar.table(
            "school_enrollment",
            [
                ar.take(sid, seg_pos),
                ar.take(sim.school_ids, seg_school),
                ar.num(np.full(len(seg_pos), y.sy), pa.int16()),
                ar.num(seg_grade, pa.int8()),
                ar.dates(cal[seg_start]),
                ar.dates(cal[seg_end]),
                ar.labels(EXIT_TYPES, seg_exit),
            ],
        ),
    )
    sec_ids = ar.fixed_ids(f"SEC{y.sy}-", np.arange(1, len(plan.course) + 1), 7)
    term_ids = pa.array([f"SY{y.sy}", f"SY{y.sy}-S1", f"SY{y.sy}-S2"], pa.string())
    course_ids = pa.array(sim.catalog.course_id, pa.string())
    emit(
        "section",
        ar.table(
            "section",
            [
                sec_ids,
                ar.take(course_ids, plan.course),
                ar.take(term_ids, plan.term),
                ar.take(sim.school_ids, plan.school),
            ],
        ),
    )
    ce_pos = seg_pos[plan.ce_seg]
    for sl in _slices(len(ce_pos)):
        emit(
            "enrollment",
            ar.table(
                "enrollment",
                [
                    ar.take(sec_ids, plan.ce_sec[sl]),
                    ar.take(sid, ce_pos[sl]),
                    ar.const("student", len(ce_pos[sl])),
                    ar.dates(cal[grades["ce_start"][sl]]),
                    ar.dates(cal[grades["ce_end"][sl]]),
                ],
            ),
        )
    t_start = np.where(plan.term == TERM_SPRING, m.SEMESTER_SPLIT, 0)
    t_end = np.where(plan.term == TERM_FALL, m.SEMESTER_SPLIT - 1, m.N_DAYS - 1)
    emit(
        "enrollment",
        ar.table(
            "enrollment",
            [
                sec_ids,
                ar.take(tid, plan.teacher),
                ar.const("teacher", len(plan.teacher)),
                ar.dates(cal[t_start]),
                ar.dates(cal[t_end]),
            ],
        ),
    )
    for sl in _slices(len(att.pos)):
        pos, day = att.pos[sl], att.day[sl].astype(np.int64)
        school = np.where(day >= y.move_day[pos], y.school2[pos], y.school1[pos])
        emit(
            "attendance",
            ar.table(
                "attendance",
                [
                    ar.take(sid, pos),
                    ar.take(sim.school_ids, school),
                    ar.dates(cal[day]),
                    ar.labels(STATUS_NAMES, att.status[sl]),
                ],
            ),
        )
    inc_pos, inc_day, inc_sev = incidents
    inc_day = inc_day.astype(np.int64)
    school = np.where(inc_day >= y.move_day[inc_pos], y.school2[inc_pos], y.school1[inc_pos])
    emit(
        "discipline",
        ar.table(
            "discipline",
            [
                ar.fixed_ids(f"INC{y.sy}-", np.arange(1, len(inc_pos) + 1), 8),
                ar.take(sid, inc_pos),
                ar.take(sim.school_ids, school),
                ar.dates(cal[inc_day]),
                ar.labels(SEVERITY_NAMES, inc_sev),
            ],
        ),
    )
    graded = np.flatnonzero(grades["graded"])
    for sl in _slices(len(graded)):
        g = graded[sl]
        emit(
            "course_grade",
            ar.table(
                "course_grade",
                [
                    ar.take(sid, ce_pos[g]),
                    ar.take(sec_ids, plan.ce_sec[g]),
                    ar.take(term_ids, plan.term[plan.ce_sec[g]]),
                    ar.num(grades["numeric"][g], pa.float64()),
                    ar.labels(LETTERS, grades["letter"][g]),
                    ar.num(grades["credits"][g], pa.float64()),
                    ar.num(grades["earned"][g], pa.float64()),
                ],
            ),
        )
    tp = tests["pos"]
    emit(
        "assessment_result",
        ar.table(
            "assessment_result",
            [
                ar.take(sid, tp),
                ar.const("state_test", len(tp)),
                ar.labels(m.SUBJECTS, tests["subject"]),
                ar.num(np.full(len(tp), y.sy), pa.int16()),
                ar.num(y.grade[tp], pa.int8()),
                ar.dates(cal[tests["day"]]),
                ar.num(tests["score"], pa.float64()),
                ar.num(tests["sem"], pa.float64()),
                ar.num(tests["level"], pa.int8()),
                ar.num(
                    _state_percentiles(tests["subject"] * 100 + y.grade[tp], tests["score"]), pa.float64()
                ),
            ],
        ),
    )
    staff = sim.staff
    rows_t: list[np.ndarray] = []
    rows_s: list[np.ndarray] = []
    for s in range(2):
        sel = np.flatnonzero(staff.taught & ~np.isnan(staff.mu[:, s]))
        rows_t.append(sel)
        rows_s.append(np.full(len(sel), s))
    tt, ss = np.concatenate(rows_t), np.concatenate(rows_s)
    emit(
        "teacher_effects",
        ar.table(
            "teacher_effects",
            [
                ar.take(tid, tt),
                ar.labels(m.SUBJECTS, ss),
                ar.num(np.full(len(tt), y.sy), pa.int16()),
                ar.num(staff.mu[tt, ss] + staff.eta[tt, ss], pa.float64()),
                ar.num(staff.mu[tt, ss], pa.float64()),
            ],
            truth=True,
        ),
    )


def _state_percentiles(groups: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Percentile rank (1-99) of each score among the scores of its subject and grade this year."""
    n = len(scores)
    if n == 0:
        return np.empty(0)
    order = np.lexsort((scores, groups))
    sorted_groups = groups[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    sizes = np.diff(np.r_[starts, n])
    group_of = np.repeat(np.arange(len(starts)), sizes)
    rank = np.arange(n) - starts[group_of]
    out = np.empty(n)
    out[order] = np.clip(np.floor(100 * (rank + 0.5) / sizes[group_of]), 1, 99)
    return out
