"""Year-by-year simulation of the synthetic district (private).

:class:`DistrictSim` owns the state (students, teachers, schools) and emits Arrow table
chunks through a callback as each year completes, so large districts can be streamed to
disk without holding every table in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from edsight.synth import _district_arrow as ar
from edsight.synth import _district_model as m
from edsight.synth import _district_names as nm
from edsight.synth._district_people import Students, new_students
from edsight.synth._district_sections import SUBJECT_NAMES, Staff, build_catalog

log = logging.getLogger(__name__)

Emit = Callable[[str, pa.Table], None]
Progress = Callable[[str], None]

OUTCOMES = ("graduated", "dropped_out", "transferred_out", "still_enrolled")
DISTRICT_ID = "DST001"
RNG_SETUP, RNG_ROSTER, RNG_STAFF = 0, 1, 9
DEFINITIONS = {
    "chronic_absence": (
        "absences >= 10% of enrolled instructional days; student-years with >= 10 enrolled days"
    ),
    "on_track": (
        "first-time 9th graders graded in both semesters: >= 5.0 credits earned and at most "
        "one semester F in a core course"
    ),
    "four_year_graduation_rate": (
        "graduated by the end of cohort_year / (cohort members - transferred_out), for cohorts "
        "whose 9th-grade year lies in the window"
    ),
    "effects_units": "student SD units per year (1 SD = scale_sd scale points)",
}  # spawn-key components (see _district_year)


def split_schools(n_schools: int) -> tuple[int, int, int]:
    """(elementary, middle, high) counts: about 60/20/20, at least one of each."""
    n_mid = max(1, round(m.SCHOOL_SHARE_MIDDLE * n_schools))
    n_high = max(1, round(m.SCHOOL_SHARE_HIGH * n_schools))
    return n_schools - n_mid - n_high, n_mid, n_high


class DistrictSim:
    """The generative model, run year by year."""

    def __init__(self, n_students: int, n_years: int, n_schools: int, seed: int, start_year: int) -> None:
        self.n_students = n_students
        self.n_years = n_years
        self.seed = seed
        self.start_year = start_year
        self.n_elem, self.n_mid, self.n_high = split_schools(n_schools)
        self.n_schools = n_schools
        self.level = np.repeat(np.arange(3, dtype=np.int8), [self.n_elem, self.n_mid, self.n_high])
        self.level_first = np.array([0, self.n_elem, self.n_elem + self.n_mid])
        self.level_count = np.array([self.n_elem, self.n_mid, self.n_high])
        rng = self.rng(0, RNG_SETUP)
        zone_w = rng.gamma(m.SCHOOL_SIZE_GAMMA_SHAPE, size=self.n_elem)
        self.zone_w = zone_w / zone_w.sum()
        self.zone_dep = rng.standard_normal(self.n_elem)
        self.feed = np.zeros((3, self.n_elem), np.int64)  # level-school index fed by each zone
        self.feed[0] = np.arange(self.n_elem)
        for lev in (1, 2):
            perm = rng.permutation(self.n_elem)
            self.feed[lev, perm] = np.arange(self.n_elem) % self.level_count[lev]
        z = rng.standard_normal((n_schools, 2))
        rho = m.SCHOOL_EFFECT_CORR
        z[:, 1] = rho * z[:, 0] + np.sqrt(1 - rho**2) * z[:, 1]
        # Centred over the district's schools so effects read as deviations from the district
        # average school, which is what school value-added models estimate.
        z -= z.mean(axis=0)
        self.school_eff = z * m.SCHOOL_EFFECT_SD
        self.calendars = [m.school_calendar(start_year + t) for t in range(n_years)]
        self.catalog = build_catalog()
        self.students = Students()
        self.staff = Staff()
        self.school_ids = ar.fixed_ids("SCH", np.arange(1, n_schools + 1), 3)
        self.target = np.zeros(m.N_GRADES, np.int64)
        self.metrics: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ helpers
    def rng(self, t: int, component: int) -> np.random.Generator:
        """Independent stream per (year, component) so components never shift each other."""
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(t, component)))

    def school_of(self, zone: np.ndarray, grade: np.ndarray) -> np.ndarray:
        """Global school index for students living in ``zone`` at ``grade`` (feeder pattern)."""
        lev = np.where(grade <= 5, 0, np.where(grade <= 8, 1, 2))
        return np.asarray(self.level_first[lev] + self.feed[lev, zone], np.int64)

    def relocate(self, rng: np.random.Generator, zone: np.ndarray, lev: np.ndarray) -> np.ndarray:
        """A new home zone whose school at level ``lev`` differs from the current one."""
        new = zone.copy()
        for level in range(3):
            sel = np.flatnonzero(lev == level)
            n_l = int(self.level_count[level])
            if n_l < 2 or len(sel) == 0:
                continue
            cur = self.feed[level, zone[sel]]
            goal = (cur + 1 + rng.integers(0, n_l - 1, len(sel))) % n_l
            order = np.argsort(self.feed[level], kind="stable")
            counts = np.bincount(self.feed[level], minlength=n_l)
            starts = np.cumsum(counts) - counts
            pick = starts[goal] + np.floor(rng.random(len(sel)) * counts[goal]).astype(np.int64)
            new[sel] = order[pick]
        return new

    def student_ids(self, idx: np.ndarray) -> pa.Array:
        return ar.fixed_ids("S", np.asarray(idx) + 1, 8)

    def teacher_ids(self) -> pa.Array:
        return ar.fixed_ids("T", np.arange(1, self.staff.n + 1), 6)

    # ------------------------------------------------------------------ static tables
    def emit_static(self, emit: Emit) -> None:
        """organization, course, term, calendar and the school-effect truth."""
        k = self.n_schools
        names = []
        suffix = ("Elementary School", "Middle School", "High School")
        for i in range(k):
            base = nm.SCHOOL_NAMES[i % len(nm.SCHOOL_NAMES)]
            rep = i // len(nm.SCHOOL_NAMES)
            names.append(f"{base}{'' if rep == 0 else f' {rep + 1}'} {suffix[self.level[i]]}")
        lo = np.array([0, 6, 9])[self.level]
        hi = np.array([5, 8, 12])[self.level]
        valid = np.concatenate([[False], np.ones(k, bool)])
        emit(
            "organization",
            ar.table(
                "organization",
                [
                    pa.concat_arrays([pa.array([DISTRICT_ID]), self.school_ids]),
                    pa.array(["Synthetic Unified School District", *names], pa.string()),
                    pa.array(["district"] + ["school"] * k, pa.string()),
                    pa.array([None] + [DISTRICT_ID] * k, pa.string()),
                    pa.array([None] + [m.LEVEL_NAMES[lv] for lv in self.level], pa.string()),
                    ar.num(np.concatenate([[0], lo]), pa.int8(), valid),
                    ar.num(np.concatenate([[0], hi]), pa.int8(), valid),
                ],
            ),
        )
        cat = self.catalog
        emit(
            "course",
            ar.table(
                "course",
                [
                    pa.array(cat.course_id, pa.string()),
                    pa.array(cat.title, pa.string()),
                    ar.labels(SUBJECT_NAMES, cat.subject),
                    ar.num(cat.grade_low, pa.int8()),
                    ar.num(cat.grade_high, pa.int8()),
                    ar.num(cat.credits, pa.float64()),
                ],
            ),
        )
        term_rows: list[tuple[str, str, str, int, int, int, str | None]] = []
        for t, cal in enumerate(self.calendars):
            sy = self.start_year + t
            sid = f"SY{sy}"
            split = m.SEMESTER_SPLIT
            term_rows.append((sid, f"{sy}-{sy + 1}", "school_year", sy, cal[0], cal[-1], None))
            term_rows.append((f"{sid}-S1", f"Fall {sy}", "semester", sy, cal[0], cal[split - 1], sid))
            term_rows.append((f"{sid}-S2", f"Spring {sy + 1}", "semester", sy, cal[split], cal[-1], sid))
        cols = list(zip(*term_rows, strict=True))
        emit(
            "term",
            ar.table(
                "term",
                [
                    pa.array(cols[0], pa.string()),
                    pa.array(cols[1], pa.string()),
                    pa.array(cols[2], pa.string()),
                    ar.num(np.array(cols[3]), pa.int16()),
                    ar.dates(np.array(cols[4])),
                    ar.dates(np.array(cols[5])),
                    pa.array(cols[6], pa.string()),
                ],
            ),
        )
        days = np.concatenate(self.calendars)
        years = np.repeat(np.arange(self.n_years) + self.start_year, m.N_DAYS)
        emit(
            "calendar",
            ar.table(
                "calendar",
                [
                    pa.array([DISTRICT_ID] * len(days), pa.string()),
                    ar.num(years, pa.int16()),
                    ar.dates(days),
                ],
            ),
        )
        emit(
            "school_effects",
            ar.table(
                "school_effects",
                [
                    ar.take(self.school_ids, np.repeat(np.arange(k), 2)),
                    pa.array(list(m.SUBJECTS) * k, pa.string()),
                    ar.num(self.school_eff.reshape(-1), pa.float64()),
                ],
                truth=True,
            ),
        )

    # ------------------------------------------------------------------ roster
    def roster(self, t: int) -> tuple[np.ndarray, int, np.ndarray]:
        """(roster student indices, number present in the fall, entry day per roster row)."""
        rng = self.rng(t + 1, RNG_ROSTER)
        sy = self.start_year + t
        stu = self.students
        if t == 0:
            w = np.asarray(m.GRADE_WEIGHTS)
            exact = self.n_students * w / w.sum()
            counts = np.floor(exact).astype(np.int64)
            rest = self.n_students - counts.sum()
            counts[np.argsort(-(exact - counts), kind="stable")[:rest]] += 1
            self.target = counts
            grade = np.repeat(np.arange(m.N_GRADES), counts)
            zone = rng.choice(self.n_elem, len(grade), p=self.zone_w)
            fall = new_students(stu, rng, zone, self.zone_dep, grade, sy, np.zeros(len(grade), bool))
        else:
            cont = np.flatnonzero(stu["active"])
            have = np.bincount(stu["grade"][cont], minlength=m.N_GRADES)
            want = np.maximum(np.round(m.MIN_SUMMER_IN_RATE * self.target), self.target - have)
            want[0] = max(self.target[0] - have[0], 0)
            counts = rng.poisson(want)
            grade = np.repeat(np.arange(m.N_GRADES), counts)
            zone = rng.choice(self.n_elem, len(grade), p=self.zone_w)
            new = new_students(stu, rng, zone, self.zone_dep, grade, sy, grade > 0)
            fall = np.concatenate([cont, new])
        n_mid = int(rng.poisson(m.MIDYEAR_IN_RATE * len(fall)))
        grade = rng.choice(m.N_GRADES, n_mid, p=self.target / self.target.sum())
        zone = rng.choice(self.n_elem, n_mid, p=self.zone_w)
        mid = new_students(stu, rng, zone, self.zone_dep, grade, sy, np.ones(n_mid, bool))
        entry = np.concatenate([np.zeros(len(fall), np.int64), rng.integers(5, m.N_DAYS - 20, n_mid)]).astype(
            np.int16
        )
        return np.concatenate([fall, mid]), len(fall), entry

    # ------------------------------------------------------------------ driver
    def run(self, emit: Emit, progress: Progress | None = None) -> None:
        """Simulate every year, emitting tables as they are completed."""
        from edsight.synth._district_year import simulate_year

        say = progress or (lambda _msg: None)
        self.emit_static(emit)
        for t in range(self.n_years):
            sy = self.start_year + t
            say(f"simulating school year {sy}-{sy + 1}")
            self.staff.start_year(self.rng(t + 1, RNG_STAFF))
            simulate_year(self, t, emit)
            log.debug("school year %d done: %s", sy, self.metrics[-1])
        say("writing people and outcomes")
        self.emit_final(emit)

    def emit_final(self, emit: Emit) -> None:
        """person, student_demographics, student_outcome and the student truth."""
        stu = self.students
        n = stu.n
        rng = self.rng(0, RNG_SETUP + 100)
        sid = self.student_ids(np.arange(n))
        tid = self.teacher_ids()
        nt = self.staff.n
        names = list(nm.GIVEN_NAMES_F) + list(nm.GIVEN_NAMES_M)
        # Student and state numbers: affine bijections mod 10^k, so unique without a lookup.
        a1, b1 = _unit(rng, 10**8), int(rng.integers(0, 10**8))
        a2, b2 = _unit(rng, 10**10), int(rng.integers(0, 10**10))
        a3, b3 = _unit(rng, 10**6), int(rng.integers(0, 10**6))
        # int64 is safe: index < 2e7 and multipliers < 1e10 keep products below 2^63.
        idx = np.arange(n, dtype=np.int64)
        local = (idx * a1 + b1) % 10**8
        state = (idx * a2 + b2) % 10**10
        staff_no = (np.arange(nt, dtype=np.int64) * a3 + b3) % 10**6
        t_given = rng.integers(0, len(names), nt)
        t_family = rng.integers(0, len(nm.FAMILY_NAMES), nt)
        emit(
            "person",
            ar.table(
                "person",
                [
                    pa.concat_arrays([sid, tid]),
                    pa.concat_arrays([ar.const("student", n), ar.const("teacher", nt)]),
                    ar.labels(names, np.concatenate([stu["given"], t_given])),
                    ar.labels(nm.FAMILY_NAMES, np.concatenate([stu["family"], t_family])),
                    ar.dates(np.concatenate([stu["birth"], np.zeros(nt, np.int32)]),
                             np.concatenate([np.ones(n, bool), np.zeros(nt, bool)])),
                    pa.concat_arrays([
                        ar.fixed_ids("", local, 8),
                        ar.fixed_ids("E", staff_no, 6),
                    ]),
                    pa.concat_arrays([
                        ar.fixed_ids("", state, 10),
                        pa.nulls(nt, pa.string()),
                    ]),
                    pa.array(np.concatenate([stu["opt_out"], np.zeros(nt, bool)]), pa.bool_()),
                ],
            ),
        )  # fmt: skip
        emit(
            "student_demographics",
            ar.table(
                "student_demographics",
                [
                    sid,
                    ar.labels(("F", "M"), stu["sex"]),
                    ar.labels(m.RACES, stu["race"]),
                    pa.array(stu["ed"], pa.bool_()),
                    pa.array(stu["el"], pa.bool_()),
                    pa.array(stu["dis"], pa.bool_()),
                ],
            ),
        )
        hs = np.flatnonzero(stu["reached_hs"])
        outcome = stu["outcome"][hs].astype(np.int64)
        still = outcome < 0
        outcome[still] = 3
        emit(
            "student_outcome",
            ar.table(
                "student_outcome",
                [
                    ar.take(sid, hs),
                    ar.num(stu["cohort"][hs], pa.int16()),
                    ar.labels(OUTCOMES, outcome),
                    ar.dates(stu["outcome_day"][hs], ~still),
                ],
            ),
        )
        emit(
            "student_truth",
            ar.table(
                "student_truth",
                [
                    ar.take(sid, np.repeat(np.arange(n), 2)),
                    ar.labels(m.SUBJECTS, np.tile(np.arange(2), n)),
                    ar.num(stu["status"].reshape(-1), pa.float64()),
                    ar.num(stu["growth"].reshape(-1), pa.float64()),
                ],
                truth=True,
            ),
        )

    # ------------------------------------------------------------------ summary
    def graduation_rates(self) -> dict[str, float | None]:
        """Four-year adjusted cohort graduation rate for cohorts observed from grade 9 on."""
        stu = self.students
        out: dict[str, float | None] = {}
        last = self.start_year + self.n_years - 1
        for cohort in range(self.start_year + 3, last + 1):
            members = stu["reached_hs"] & (stu["cohort"] == cohort)
            stayers = members & (stu["outcome"] != 2)
            grads = stayers & (stu["outcome"] == 0) & (stu["outcome_year"] <= cohort)
            den = int(stayers.sum())
            out[str(cohort)] = round(int(grads.sum()) / den, 4) if den else None
        return out

    def summary(self) -> dict[str, Any]:
        """Model constants, sizes, targets and realised rates for ground_truth.json."""
        counts = {name: int(c) for name, c in zip(m.LEVEL_NAMES, self.level_count, strict=True)}
        metrics = self.metrics

        def mean_of(key: str) -> float | None:
            vals = [x[key] for x in metrics if x.get(key) is not None]
            return round(float(np.mean(vals)), 4) if vals else None

        grad = self.graduation_rates()
        observed = [v for v in grad.values() if v is not None]
        prof: dict[str, float | None] = {}
        for subj in m.SUBJECTS:
            vals = [x["proficient_rate"][subj] for x in metrics]
            ok = [v for v in vals if v is not None]
            prof[subj] = round(float(np.mean(ok)), 4) if ok else None
        intercept = self.students.status_intercept
        if intercept is None:
            intercept = np.zeros(2)
        cuts = {
            str(g): [
                int(np.rint(m.SCALE_G3_MEAN + m.SCALE_GROWTH * (g - 3) + off * m.SCALE_SD))
                for off in m.CUT_OFFSETS_SD
            ]
            for g in m.TESTED_GRADES
        }
        return {
            "generator": "edsight.synth.district",
            "seed": self.seed,
            "n_students": self.n_students,
            "n_years": self.n_years,
            "n_schools": self.n_schools,
            "start_year": self.start_year,
            "school_counts": counts,
            "district_id": DISTRICT_ID,
            "students_ever_enrolled": self.students.n,
            "teachers_ever_employed": self.staff.n,
            "status_intercept": [round(float(v), 6) for v in intercept],
            "cut_scores": cuts,
            "model": m.model_constants(),
            "targets": {
                "chronic_absence_rate": m.CHRONIC_TARGET,
                "four_year_graduation_rate": list(m.TARGET_GRAD_RATE_4YR),
                "ninth_grade_on_track_rate": list(m.TARGET_ON_TRACK),
                "proficient_rate": list(m.TARGET_PROFICIENT),
                "retention_rate": "1-3% overall, mostly K-3 and 9",
            },
            "realized": {
                "by_year": metrics,
                "chronic_absence_rate": mean_of("chronic_absence_rate"),
                "mean_absence_rate": mean_of("mean_absence_rate"),
                "ninth_grade_on_track_rate": mean_of("ninth_grade_on_track_rate"),
                "retention_rate": mean_of("retention_rate"),
                "hs_semester_f_rate": mean_of("hs_semester_f_rate"),
                "proficient_rate": prof,
                "four_year_graduation_rate_by_cohort": grad,
                "four_year_graduation_rate": round(float(np.mean(observed)), 4) if observed else None,
            },
            "definitions": DEFINITIONS,
        }


def _unit(rng: np.random.Generator, modulus: int) -> int:
    """A random multiplier coprime with ``modulus`` (a power of ten)."""
    while True:
        a = int(rng.integers(1, modulus))
        if a % 2 and a % 5:
            return a
