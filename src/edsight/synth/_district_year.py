"""One school year of the district simulation (private).

Order within a year: roster -> in-year exits and moves -> sections -> daily attendance ->
discipline -> course grades -> achievement growth and spring tests -> promotion,
graduation and summer mobility -> emit the year's tables.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edsight.synth import _district_model as m
from edsight.synth._district_daily import Attendance, simulate_attendance, simulate_discipline
from edsight.synth._district_emit import (
    DROPPED,
    GRADUATED,
    PROMOTED,
    RETAINED,
    TRANSFERRED,
    emit_year,
    year_metrics,
)
from edsight.synth._district_people import calibrated_draw, logit, sigmoid
from edsight.synth._district_sections import (
    ELA,
    ELECTIVE,
    MATH,
    TERM_FALL,
    TERM_SPRING,
    SectionPlan,
    assign_sections,
)

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from edsight.synth._district_sim import DistrictSim, Emit

# Component numbers for per-year random streams (SeedSequence spawn keys).
RNG_EVENTS, RNG_SECTIONS, RNG_ATTEND, RNG_DISC, RNG_GRADES, RNG_TESTS, RNG_YEAREND = range(2, 9)
RNG_TURNOVER = 10


@dataclass
class Year:
    """Per-roster-row state of one school year (row = one student)."""

    t: int
    sy: int
    cal: np.ndarray
    roster: np.ndarray
    n_fall: int
    grade: np.ndarray
    entry: np.ndarray
    exit_day: np.ndarray
    exit_kind: np.ndarray  # 0 = still enrolled at year end, TRANSFERRED, DROPPED
    move_day: np.ndarray  # N_DAYS when no in-year move
    school1: np.ndarray
    school2: np.ndarray
    abs_logit: np.ndarray
    p_absent: np.ndarray


def _col(sim: DistrictSim, name: str, y: Year) -> np.ndarray:
    return np.asarray(sim.students[name][y.roster])


def _start_year(sim: DistrictSim, t: int) -> Year:
    """Roster, latent yearly propensities and the in-year exits and moves."""
    stu = sim.students
    sy = sim.start_year + t
    roster, n_fall, entry = sim.roster(t)
    n = len(roster)
    grade = stu["grade"][roster].astype(np.int64)
    hs = grade >= 9
    first_hs = roster[hs & (stu["cohort"][roster] < 0)]
    stu["cohort"][first_hs] = sy + 12 - stu["grade"][first_hs].astype(np.int64)
    stu["reached_hs"][roster[hs]] = True
    school1 = sim.school_of(stu["zone"][roster], grade)
    rng = sim.rng(t + 1, RNG_EVENTS)
    ed, dis, el = stu["ed"][roster], stu["dis"][roster], stu["el"][roster]
    risk = stu["risk"][roster]
    c = m.ABSENCE_COEF
    lp = (
        np.asarray(m.ABSENCE_GRADE_LOGIT)[grade]
        + c["economically_disadvantaged"] * ed
        + c["disability"] * dis
        + c["english_learner"] * el
        + c["risk"] * risk
        + stu["abs_trait"][roster]
        + rng.standard_normal(n) * m.ABSENCE_YEAR_SD
    )
    # Intercept by quantile: a fixed share of students has a latent rate >= the chronic cut.
    cut = float(logit(m.CHRONIC_THRESHOLD))
    alpha = cut - float(np.quantile(lp, 1 - m.CHRONIC_LATENT_SHARE)) if n else cut
    abs_logit = alpha + lp
    p_absent = np.minimum(sigmoid(abs_logit), m.MAX_ABSENCE_PROB)
    fall = np.arange(n) < n_fall
    centred = abs_logit - abs_logit.mean() if n else abs_logit
    # Dropout during the year (grades 9-12), hazard from observable risk markers.
    dc = m.DROPOUT_COEF
    drop_lp = (
        dc["risk"] * risk
        + dc["absence_logit"] * centred
        + dc["prior_fails"] * np.minimum(stu["prev_fails"][roster], 6)
        + dc["prior_incidents"] * np.minimum(stu["prev_inc"][roster], 4)
        + dc["economically_disadvantaged"] * ed
        + dc["over_age"] * stu["over_age"][roster]
    )
    dropped = np.zeros(n, bool)
    repeat12 = stu["g12_years"][roster] > 0
    groups = [(grade == g) & ~repeat12 for g in (9, 10, 11, 12)] + [(grade == 12) & repeat12]
    for sel, key in zip(groups, (9, 10, 11, 12, "repeat_12"), strict=True):
        idx = np.flatnonzero(sel & fall)
        dropped[idx] = calibrated_draw(rng, drop_lp[idx], m.DROPOUT_TARGET[key])
    mc = m.MOBILITY_COEF
    mob_lp = mc["economically_disadvantaged"] * ed + mc["risk"] * risk
    idx = np.flatnonzero(fall & ~dropped)
    transfer = np.zeros(n, bool)
    transfer[idx] = calibrated_draw(rng, mob_lp[idx], m.MIDYEAR_TRANSFER_OUT)
    exit_day = np.full(n, m.N_DAYS - 1, np.int64)
    exit_kind = np.zeros(n, np.int8)
    exit_day[dropped] = rng.integers(15, m.N_DAYS - 5, int(dropped.sum()))
    exit_kind[dropped] = DROPPED
    exit_day[transfer] = rng.integers(10, m.N_DAYS - 5, int(transfer.sum()))
    exit_kind[transfer] = TRANSFERRED
    lev = sim.level[school1]
    can_move = fall & (exit_kind == 0) & (sim.level_count[lev] >= 2)
    mover = can_move & (rng.random(n) < m.MIDYEAR_MOVE_WITHIN)
    move_day = np.full(n, m.N_DAYS, np.int64)
    move_day[mover] = rng.integers(10, m.N_DAYS - 10, int(mover.sum()))
    zone = stu["zone"][roster]
    new_zone = sim.relocate(rng, zone[mover], lev[mover])
    stu["zone"][roster[mover]] = new_zone
    school2 = school1.copy()
    school2[mover] = sim.school_of(new_zone, grade[mover])
    return Year(
        t=t,
        sy=sy,
        cal=sim.calendars[t],
        roster=roster,
        n_fall=n_fall,
        grade=grade,
        entry=entry.astype(np.int64),
        exit_day=exit_day,
        exit_kind=exit_kind,
        move_day=move_day,
        school1=school1,
        school2=school2,
        abs_logit=abs_logit,
        p_absent=p_absent,
    )


def _segments(y: Year) -> tuple[np.ndarray, ...]:
    """(pos, school, grade, start, end) per enrolment segment; movers have two."""
    n = len(y.roster)
    mv = np.flatnonzero(y.move_day < m.N_DAYS)
    pos = np.concatenate([np.arange(n), mv])
    school = np.concatenate([y.school1, y.school2[mv]])
    start = np.concatenate([y.entry, y.move_day[mv]])
    first_end = np.where(y.move_day < m.N_DAYS, y.move_day - 1, y.exit_day)
    end = np.concatenate([first_end, y.exit_day[mv]])
    return pos, school, y.grade[pos], start, end


def simulate_year(sim: DistrictSim, t: int, emit: Emit) -> None:
    """Run school year ``t`` and emit its tables."""
    y = _start_year(sim, t)
    stu = sim.students
    n = len(y.roster)
    seg_pos, seg_school, seg_grade, seg_start, seg_end = _segments(y)
    log.debug("year %d: roster of %d students", y.sy, n)
    plan = assign_sections(
        sim.rng(t + 1, RNG_SECTIONS), sim.staff, sim.catalog, sim.level,
        seg_school, seg_grade, seg_start, seg_end, t,
    )  # fmt: skip
    if t == 0:
        sim.staff.centre_initial()
    teff = sim.staff.year_effect()
    # ---------------------------------------------------------------- attendance
    risk = _col(sim, "risk", y)
    ed = _col(sim, "ed", y)
    hs = y.grade >= 9
    tardy_lp = (
        float(logit(m.TARDY_BASE))
        + np.log(m.TARDY_HIGH_SCHOOL_OR) * hs
        + m.TARDY_RISK_COEF * risk
        + _col(sim, "tardy_trait", y)
    )
    uc = m.UNEXCUSED_LOGIT
    p_unexc = sigmoid(
        uc["intercept"] + uc["economically_disadvantaged"] * ed + uc["high"] * hs + uc["risk"] * risk
    )
    log.debug("year %d: %d sections", y.sy, len(plan.course))
    att = simulate_attendance(
        sim.rng(t + 1, RNG_ATTEND),
        y.entry.astype(np.int16),
        y.exit_day.astype(np.int16),
        y.p_absent,
        np.minimum(sigmoid(tardy_lp), m.MAX_TARDY_PROB),
        p_unexc,
        m.day_multipliers(y.cal),
    )
    enrolled_days = y.exit_day - y.entry + 1
    # ---------------------------------------------------------------- discipline
    lev = sim.level[y.school1].astype(np.int64)
    dc = m.DISCIPLINE_COEF
    rel = np.exp(
        dc["risk"] * risk
        + dc["male"] * _col(sim, "sex", y)
        + dc["economically_disadvantaged"] * ed
        + dc["absence"] * (y.abs_logit - (y.abs_logit.mean() if n else 0.0))
    )
    mean_rel = np.bincount(lev, weights=rel, minlength=3) / np.maximum(np.bincount(lev, minlength=3), 1)
    rate = np.asarray(m.DISCIPLINE_LEVEL_RATE)[lev] * rel / np.maximum(mean_rel[lev], 1e-12)
    log.debug("year %d: %d attendance events", y.sy, len(att.pos))
    inc_pos, inc_day, inc_sev = simulate_discipline(
        sim.rng(t + 1, RNG_DISC), rate, y.entry, y.exit_day, y.p_absent, lev, att
    )
    n_inc = np.bincount(inc_pos, minlength=n)
    # ---------------------------------------------------------------- grades and growth
    ach_fall = stu["ach"][y.roster].copy()
    dev_fall = ach_fall - ((y.grade - 4) * m.NORM_GROWTH)[:, None]
    grades = _course_grades(sim, y, plan, seg_pos, seg_start, seg_end, dev_fall, risk, att, enrolled_days)
    w = (seg_end - seg_start + 1) / m.N_DAYS
    # Centred on a typical absence count so the district mean keeps tracking the norm.
    excess_absence = att.n_absent - m.ABSENCE_REFERENCE_DAYS * enrolled_days / m.N_DAYS
    for s in range(2):
        tch = plan.seg_teacher[:, s]
        eff = sim.school_eff[seg_school, s] + np.where(tch >= 0, teff[np.maximum(tch, 0), s], 0.0)
        contrib = np.bincount(seg_pos, weights=w * eff, minlength=n)
        stu["ach"][y.roster, s] = (
            ach_fall[:, s]
            + m.NORM_GROWTH
            + stu["growth"][y.roster, s]
            + contrib
            - m.ABSENCE_GROWTH_PENALTY * excess_absence
        )
    log.debug("year %d: course grades and growth done", y.sy)
    tests = _tests(sim, y, att)
    # ---------------------------------------------------------------- year end
    exit_type = _year_end(sim, y, grades["fails"], n_inc)
    log.debug("year %d: tests and year-end done", y.sy)
    metrics = year_metrics(sim, y, att, enrolled_days, grades, tests, exit_type, len(inc_pos))
    sim.metrics.append(metrics)
    emit_year(sim, y, emit, plan, att, (inc_pos, inc_day, inc_sev), grades, tests, exit_type,
               (seg_pos, seg_school, seg_grade, seg_start, seg_end))  # fmt: skip
    sim.staff.end_year(sim.rng(t + 1, RNG_TURNOVER))


# ------------------------------------------------------------------------- course grades
def _course_grades(
    sim: DistrictSim,
    y: Year,
    plan: SectionPlan,
    seg_pos: np.ndarray,
    seg_start: np.ndarray,
    seg_end: np.ndarray,
    dev_fall: np.ndarray,
    risk: np.ndarray,
    att: Attendance,
    enrolled_days: np.ndarray,
) -> dict[str, np.ndarray]:
    """A grade for every section membership still active on the term's last day."""
    rng = sim.rng(y.t + 1, RNG_GRADES)
    n = len(y.roster)
    cat = sim.catalog
    term = plan.term[plan.ce_sec]
    term_start = np.where(term == TERM_SPRING, m.SEMESTER_SPLIT, 0)
    term_end = np.where(term == TERM_FALL, m.SEMESTER_SPLIT - 1, m.N_DAYS - 1)
    seg = plan.ce_seg
    ce_start = np.maximum(seg_start[seg], term_start)
    ce_end = np.minimum(seg_end[seg], term_end)
    graded = ce_end == term_end
    pos = seg_pos[seg]
    course = plan.course[plan.ce_sec]
    subj = cat.subject[course]
    ach = np.where(
        subj == MATH,
        dev_fall[pos, 0],
        np.where(subj == ELA, dev_fall[pos, 1], dev_fall[pos].mean(axis=1)),
    )
    level = sim.level[plan.school[plan.ce_sec]]
    abs_rate = att.n_absent / np.maximum(enrolled_days, 1)
    student_year = rng.standard_normal(n) * m.GRADE_STUDENT_YEAR_SD
    leniency = rng.standard_normal(len(plan.course)) * m.GRADE_SECTION_SD
    value = (
        np.asarray(m.GRADE_MEAN_BY_LEVEL)[level]
        + m.GRADE_NINTH_SHIFT * (y.grade[pos] == 9)
        + m.GRADE_ELECTIVE_SHIFT * (subj == ELECTIVE)
        + m.GRADE_ACH_COEF * ach
        - m.GRADE_ENGAGEMENT_COEF * risk[pos]
        - m.GRADE_ABSENCE_COEF * np.maximum(abs_rate[pos] - m.GRADE_ABSENCE_FREE, 0)
        + student_year[pos]
        + leniency[plan.ce_sec]
        + rng.standard_normal(len(pos)) * m.GRADE_NOISE_SD
    )
    numeric = np.clip(np.rint(value), 0, 100)
    letter = (4 - np.digitize(numeric, m.LETTER_CUTS)).astype(np.int8)
    fail = letter == 4
    credits = cat.credits[course]
    earned = np.where(fail, 0.0, credits)
    g = graded
    hs_core = subj < ELECTIVE
    return {
        "ce_start": ce_start,
        "ce_end": ce_end,
        "graded": graded,
        "numeric": numeric,
        "letter": letter,
        "credits": credits,
        "earned": earned,
        "fails": np.bincount(pos[g & fail], minlength=n),
        "core_fails": np.bincount(pos[g & fail & hs_core & (credits > 0)], minlength=n),
        "hs_credits": np.bincount(pos[g], weights=earned[g], minlength=n),
        "graded_fall": np.bincount(pos[g & (term == TERM_FALL)], minlength=n) > 0,
        "graded_spring": np.bincount(pos[g & (term == TERM_SPRING)], minlength=n) > 0,
        "hs_graded": g & (credits > 0),
    }


# ------------------------------------------------------------------------- state tests
def _tests(sim: DistrictSim, y: Year, att: Attendance) -> dict[str, np.ndarray]:
    """Spring state tests: students enrolled and present on their school's test day."""
    rng = sim.rng(y.t + 1, RNG_TESTS)
    n = len(y.roster)
    offset = rng.integers(0, 7, sim.n_schools)
    stu = sim.students
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("pos", "subject", "day", "score", "sem", "level")}
    tested_grade = np.isin(y.grade, m.TESTED_GRADES)
    norm = m.SCALE_G3_MEAN + m.SCALE_GROWTH * (y.grade - 3)
    for s in range(2):
        test_day = m.TEST_WINDOW_START + offset + 2 * (1 - s)  # reading first, math two days later
        d1 = test_day[y.school1]
        d2 = test_day[y.school2]
        use2 = y.move_day <= d2
        day = np.where(use2, d2, d1)
        enrolled = (y.entry <= day) & (day <= y.exit_day) & (use2 | (d1 < y.move_day))
        ok = tested_grade & enrolled & (rng.random(n) >= m.TEST_OPT_OUT)
        ok &= ~att.absent_on(np.arange(n), day, n)
        transient = rng.standard_normal(n) * m.TRANSIENT_SD
        error = rng.standard_normal(n)
        idx = np.flatnonzero(ok)
        true = m.SCALE_G3_MEAN + m.SCALE_SD * (stu["ach"][y.roster[idx], s] + transient[idx])
        z = (true - norm[idx]) / m.SCALE_SD
        sem = np.round(np.minimum(m.SEM_MIN * np.sqrt(1 + m.SEM_CURVATURE * z**2), m.SEM_MAX), 1)
        half = m.SCALE_HALF_RANGE_SD * m.SCALE_SD
        score = np.clip(np.rint(true + sem * error[idx]), norm[idx] - half, norm[idx] + half)
        level = np.ones(len(idx), np.int8)
        for off in m.CUT_OFFSETS_SD:
            level += score >= np.rint(norm[idx] + off * m.SCALE_SD)
        out["pos"].append(idx)
        out["subject"].append(np.full(len(idx), s, np.int8))
        out["day"].append(day[idx])
        out["score"].append(score)
        out["sem"].append(sem)
        out["level"].append(level)
    return {k: np.concatenate(v) for k, v in out.items()}


# ------------------------------------------------------------------------- year end
def _year_end(sim: DistrictSim, y: Year, fails: np.ndarray, n_inc: np.ndarray) -> np.ndarray:
    """Promotion, retention, graduation, summer moves; returns the final exit type per row."""
    stu = sim.students
    rng = sim.rng(y.t + 1, RNG_YEAREND)
    n = len(y.roster)
    r = y.roster
    at_end = y.exit_kind == 0
    dev = (stu["ach"][r] - ((y.grade - 3) * m.NORM_GROWTH)[:, None]).mean(axis=1)
    centred = y.abs_logit - (y.abs_logit.mean() if n else 0.0)
    risk = stu["risk"][r]
    rc = m.RETENTION_COEF
    ret_lp = (
        rc["achievement"] * dev
        + rc["absence"] * centred
        + rc["fails"] * np.minimum(fails, 6)
        + rc["risk"] * risk
    )
    retained = np.zeros(n, bool)
    for g, target in enumerate(m.RETENTION_TARGET):
        idx = np.flatnonzero(at_end & (y.grade == g))
        retained[idx] = calibrated_draw(rng, ret_lp[idx], target)
    nc = m.NONCOMPLETION_COEF
    nc_lp = nc["fails"] * np.minimum(fails, 6) + nc["risk"] * risk + nc["absence_logit"] * centred
    repeat12 = stu["g12_years"][r] > 0
    for sel, key in ((~repeat12, "first_time_12"), (repeat12, "repeat_12")):
        idx = np.flatnonzero(at_end & (y.grade == 12) & sel)
        retained[idx] = calibrated_draw(rng, nc_lp[idx], m.NONCOMPLETION_TARGET[key])
    graduated = at_end & (y.grade == 12) & ~retained
    mc = m.MOBILITY_COEF
    mob_lp = mc["economically_disadvantaged"] * stu["ed"][r] + mc["risk"] * risk
    leave = np.zeros(n, bool)
    idx = np.flatnonzero(at_end & ~graduated)
    leave[idx] = calibrated_draw(rng, mob_lp[idx], m.SUMMER_LEAVE)
    exit_type = np.where(retained, RETAINED, PROMOTED).astype(np.int8)
    exit_type[graduated] = GRADUATED
    exit_type[leave] = TRANSFERRED
    exit_type[y.exit_kind == TRANSFERRED] = TRANSFERRED
    exit_type[y.exit_kind == DROPPED] = DROPPED
    # Outcomes are tracked for everyone; only students who reached grade 9 are reported.
    last = int(y.cal[-1])
    done = exit_type != PROMOTED
    done &= exit_type != RETAINED
    stu["active"][r] = ~done
    code = {GRADUATED: 0, DROPPED: 1, TRANSFERRED: 2}
    for et, oc in code.items():
        sel = exit_type == et
        stu["outcome"][r[sel]] = oc
        stu["outcome_year"][r[sel]] = y.sy
        stu["outcome_day"][r[sel]] = np.where(at_end[sel], last, y.cal[y.exit_day[sel]])
    cont = np.flatnonzero(~done)
    rc_idx = r[cont]
    stu["g12_years"][rc_idx] += (y.grade[cont] == 12).astype(np.int8)
    stu["over_age"][rc_idx] |= retained[cont]
    stu["grade"][rc_idx] += (~retained[cont]).astype(np.int8)
    if sim.n_elem >= 2:
        mv = rc_idx[rng.random(len(cont)) < m.SUMMER_MOVE_WITHIN]
        step = 1 + rng.integers(0, sim.n_elem - 1, len(mv))
        stu["zone"][mv] = (stu["zone"][mv] + step) % sim.n_elem
    shock = rng.standard_normal(len(cont))
    stu["risk"][rc_idx] = m.RISK_AR * stu["risk"][rc_idx] + np.sqrt(1 - m.RISK_AR**2) * shock
    stu["prev_fails"][r] = np.minimum(fails, 100)
    stu["prev_inc"][r] = np.minimum(n_inc, 100)
    return exit_type
