"""Course catalog, teacher staffing and section assignment for the district generator.

Everything here is vectorised over enrolment segments (one student at one school for a
contiguous part of a year); Python loops only run over schools, grades and subjects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edsight.synth import _district_model as m

# Subject codes used inside the simulation (course.subject strings are SUBJECT_NAMES).
MATH, ELA, SCIENCE, SOCIAL, ELECTIVE = 0, 1, 2, 3, 4
SUBJECT_NAMES = ("math", "ela", "science", "social_studies", "elective", "homeroom")
CORE_TITLES_ELEM = ("Mathematics", "English Language Arts", "Science", "Social Studies")
CORE_TITLES_MID = ("Mathematics", "English", "Science", "Social Studies")
CORE_TITLES_HIGH = (
    ("Algebra I", "Geometry", "Algebra II", "Precalculus"),
    ("English 9", "English 10", "English 11", "English 12"),
    ("Biology", "Chemistry", "Physics", "Environmental Science"),
    ("World Geography", "World History", "U.S. History", "Government and Economics"),
)
SUBJECT_TAGS = ("MATH", "ELA", "SCI", "SS")
MID_ELECTIVES = ("Art", "Music", "Physical Education", "Technology")
HIGH_ELECTIVES = ("Art I", "Band", "Physical Education", "Spanish I", "Computer Science", "Health")
TERM_YEAR, TERM_FALL, TERM_SPRING = 0, 1, 2
CORE_KINDS = ("math", "ela", "science", "social_studies")


@dataclass(frozen=True)
class Catalog:
    """The district course catalog plus lookup arrays into it."""

    course_id: list[str]
    title: list[str]
    subject: np.ndarray  # int8 subject code
    grade_low: np.ndarray
    grade_high: np.ndarray
    credits: np.ndarray
    elem: np.ndarray  # [grade, core subject] -> course index
    mid: np.ndarray  # [grade, core subject]
    mid_elective: np.ndarray  # [elective]
    high: np.ndarray  # [grade, core subject, half]
    high_elective: np.ndarray  # [elective]


def build_catalog() -> Catalog:
    """Elementary/middle year-long courses (no credit) and high-school semester courses."""
    ids: list[str] = []
    titles: list[str] = []
    subj: list[int] = []
    lo: list[int] = []
    hi: list[int] = []
    cred: list[float] = []

    def add(cid: str, title: str, s: int, g0: int, g1: int, c: float) -> int:
        ids.append(cid)
        titles.append(title)
        subj.append(s)
        lo.append(g0)
        hi.append(g1)
        cred.append(c)
        return len(ids) - 1

    elem = np.full((m.N_GRADES, 4), -1, dtype=np.int32)
    for g in range(0, 6):
        gname = "Kindergarten" if g == 0 else f"Grade {g}"
        for s in range(4):
            elem[g, s] = add(f"E{g:02d}-{SUBJECT_TAGS[s]}", f"{gname} {CORE_TITLES_ELEM[s]}", s, g, g, 0.0)
    mid = np.full((m.N_GRADES, 4), -1, dtype=np.int32)
    for g in range(6, 9):
        for s in range(4):
            mid[g, s] = add(f"M{g:02d}-{SUBJECT_TAGS[s]}", f"{CORE_TITLES_MID[s]} {g}", s, g, g, 0.0)
    mid_el = np.array(
        [add(f"M-EL{i + 1}", t, ELECTIVE, 6, 8, 0.0) for i, t in enumerate(MID_ELECTIVES)], np.int32
    )
    high = np.full((m.N_GRADES, 4, 2), -1, dtype=np.int32)
    credit = m.HS_CREDITS_PER_SEMESTER_COURSE
    for g in range(9, 13):
        for s in range(4):
            for h, suffix in enumerate("AB"):
                title = f"{CORE_TITLES_HIGH[s][g - 9]} {suffix}"
                high[g, s, h] = add(f"H{g:02d}-{SUBJECT_TAGS[s]}-{suffix}", title, s, g, g, credit)
    high_el = np.array(
        [add(f"H-EL{i + 1}", t, ELECTIVE, 9, 12, credit) for i, t in enumerate(HIGH_ELECTIVES)],
        np.int32,
    )
    return Catalog(
        course_id=ids,
        title=titles,
        subject=np.asarray(subj, np.int8),
        grade_low=np.asarray(lo, np.int8),
        grade_high=np.asarray(hi, np.int8),
        credits=np.asarray(cred, np.float64),
        elem=elem,
        mid=mid,
        mid_elective=mid_el,
        high=high,
        high_elective=high_el,
    )


# --------------------------------------------------------------------------- staff
@dataclass
class Staff:
    """All teachers ever hired, their effects and the per-school hiring pools."""

    school: list[np.ndarray] = field(default_factory=list)
    hired_year: list[np.ndarray] = field(default_factory=list)
    mu: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    eta: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    last_grade: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    taught: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    pools: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.mu.shape[0])

    def hire(self, rng: np.random.Generator, school: int, n: int, kind: str, t: int) -> np.ndarray:
        """New teachers at ``school``; ``kind`` is 'elem', 'math', 'ela' or another subject."""
        first = self.n
        mu = np.full((n, 2), np.nan)
        z = rng.standard_normal((n, 2))
        if kind == "elem":
            rho = m.TEACHER_SUBJECT_CORR
            mu[:, 0] = z[:, 0]
            mu[:, 1] = rho * z[:, 0] + np.sqrt(1 - rho**2) * z[:, 1]
        elif kind in ("math", "ela"):
            col = 0 if kind == "math" else 1
            mu[:, col] = z[:, 0]
        mu *= m.TEACHER_EFFECT_SD
        eta = rng.standard_normal((n, 2)) * m.TEACHER_DRIFT_SD
        eta[np.isnan(mu)] = np.nan
        self.mu = np.concatenate([self.mu, mu])
        self.eta = np.concatenate([self.eta, eta])
        self.school.append(np.full(n, school, np.int32))
        self.hired_year.append(np.full(n, t, np.int16))
        self.last_grade = np.concatenate([self.last_grade, np.full(n, 99, np.int8)])
        self.taught = np.concatenate([self.taught, np.zeros(n, bool)])
        return np.arange(first, first + n, dtype=np.int32)

    def start_year(self, rng: np.random.Generator) -> None:
        """Advance every teacher's AR(1) drift by one year and clear the taught flags."""
        ar = m.TEACHER_DRIFT_AR
        shock = rng.standard_normal(self.eta.shape) * m.TEACHER_DRIFT_SD * np.sqrt(1 - ar**2)
        self.eta = ar * self.eta + shock
        self.taught[:] = False

    def end_year(self, rng: np.random.Generator) -> None:
        """Turnover: each teacher leaves with probability TEACHER_TURNOVER."""
        for key in sorted(self.pools):
            pool = self.pools[key]
            self.pools[key] = pool[rng.random(len(pool)) >= m.TEACHER_TURNOVER]

    def staff(self, rng: np.random.Generator, school: int, kind: str, n: int, t: int) -> np.ndarray:
        """``n`` teachers of ``kind`` at ``school``: returning teachers first, then hires."""
        key = (school, kind)
        pool = self.pools.get(key, np.zeros(0, np.int32))
        if len(pool) < n:
            pool = np.concatenate([pool, self.hire(rng, school, n - len(pool), kind, t)])
        pool = pool[:n]  # surplus teachers leave the district
        self.pools[key] = pool
        self.taught[pool] = True
        return pool

    def staff_elementary(
        self, rng: np.random.Generator, school: int, class_grade: np.ndarray, t: int
    ) -> np.ndarray:
        """One homeroom teacher per class, keeping returning teachers in their last grade."""
        key = (school, "elem")
        pool = self.pools.get(key, np.zeros(0, np.int32))
        out = np.full(len(class_grade), -1, np.int32)
        spare: list[np.ndarray] = []
        for g in np.unique(class_grade):
            slots = np.flatnonzero(class_grade == g)
            same = pool[self.last_grade[pool] == g]
            k = min(len(slots), len(same))
            out[slots[:k]] = same[:k]
            spare.append(same[k:])
        spare.append(pool[~np.isin(self.last_grade[pool], np.unique(class_grade))])
        free = np.sort(np.concatenate(spare)) if spare else np.zeros(0, np.int32)
        open_slots = np.flatnonzero(out < 0)
        k = min(len(open_slots), len(free))
        out[open_slots[:k]] = free[:k]
        if len(open_slots) > k:
            out[open_slots[k:]] = self.hire(rng, school, len(open_slots) - k, "elem", t)
        self.last_grade[out] = class_grade
        self.pools[key] = out.copy()
        self.taught[out] = True
        return out

    def year_effect(self) -> np.ndarray:
        """Teacher effect this year, (n_teachers, 2) for math/reading (0 where none)."""
        eff = self.mu + self.eta
        return np.nan_to_num(eff, nan=0.0)

    def centre_initial(self) -> None:
        """Centre persistent effects within school x subject (the year-1 pools only), so that
        between-school differences are carried by the school effects."""
        school = np.concatenate(self.school)
        for s in range(2):
            ok = ~np.isnan(self.mu[:, s])
            sums = np.bincount(school[ok], weights=self.mu[ok, s], minlength=school.max() + 1)
            cnt = np.bincount(school[ok], minlength=school.max() + 1)
            mean = np.divide(sums, cnt, out=np.zeros_like(sums), where=cnt > 0)
            self.mu[ok, s] -= mean[school[ok]]


# --------------------------------------------------------------------------- sections
@dataclass
class SectionPlan:
    """Sections of one year and the segment-to-section memberships."""

    course: np.ndarray
    term: np.ndarray
    school: np.ndarray
    teacher: np.ndarray
    ce_seg: np.ndarray
    ce_sec: np.ndarray
    seg_teacher: np.ndarray  # (n_seg, 2): teacher of record for math / reading


class _Builder:
    def __init__(self, n_seg: int) -> None:
        self.parts: dict[str, list[np.ndarray]] = {k: [] for k in ("course", "term", "school", "teacher")}
        self.members: list[tuple[np.ndarray, np.ndarray]] = []
        self.n = 0
        self.seg_teacher = np.full((n_seg, 2), -1, np.int32)

    def sections(self, course: np.ndarray, term: int, school: np.ndarray, teacher: np.ndarray) -> int:
        first = self.n
        self.parts["course"].append(np.asarray(course, np.int32))
        self.parts["term"].append(np.full(len(course), term, np.int8))
        self.parts["school"].append(np.asarray(school, np.int32))
        self.parts["teacher"].append(np.asarray(teacher, np.int32))
        self.n += len(course)
        return first

    def plan(self) -> SectionPlan:
        def cat(key: str, dtype: type) -> np.ndarray:
            arrs = self.parts[key]
            return np.concatenate(arrs).astype(dtype) if arrs else np.zeros(0, dtype)

        segs = [a for a, _ in self.members]
        secs = [b for _, b in self.members]
        return SectionPlan(
            course=cat("course", np.int32),
            term=cat("term", np.int8),
            school=cat("school", np.int32),
            teacher=cat("teacher", np.int32),
            ce_seg=np.concatenate(segs).astype(np.int32) if segs else np.zeros(0, np.int32),
            ce_sec=np.concatenate(secs).astype(np.int32) if secs else np.zeros(0, np.int32),
            seg_teacher=self.seg_teacher,
        )


def _slots(
    keys: np.ndarray, cap: float | Callable[[np.ndarray], np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spread rows over balanced classes per key.

    Returns (unique keys, classes per key, class index per row), class indices running
    over all keys in key order; rows go round-robin in random order so sizes differ by <= 1.
    ``cap`` is the class-size target, or a function of the unique keys giving it.
    """
    uniq, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
    size = cap(uniq) if callable(cap) else cap
    n_cls = np.maximum(1, np.ceil(counts / size)).astype(np.int64)
    order = np.lexsort((rng.random(len(keys)), inv))
    starts = np.cumsum(counts) - counts
    rank = np.empty(len(keys), np.int64)
    rank[order] = np.arange(len(keys)) - starts[inv[order]]
    first_cls = np.cumsum(n_cls) - n_cls
    return uniq.astype(np.int64), n_cls, first_cls[inv] + rank % n_cls[inv]


def _block_teachers(
    staff: Staff, rng: np.random.Generator, sec_school: np.ndarray, kind: str, t: int
) -> np.ndarray:
    """Teacher per section: each school's sections (in order) go in blocks of the load."""
    teacher = np.empty(len(sec_school), np.int32)
    for s in np.unique(sec_school):
        idx = np.flatnonzero(sec_school == s)
        n_t = -(-len(idx) // m.SECTIONS_PER_TEACHER)
        pool = staff.staff(rng, int(s), kind, n_t, t)
        teacher[idx] = pool[np.arange(len(idx)) // m.SECTIONS_PER_TEACHER]
    return teacher


def assign_sections(
    rng: np.random.Generator,
    staff: Staff,
    cat: Catalog,
    level_of_school: np.ndarray,
    seg_school: np.ndarray,
    seg_grade: np.ndarray,
    seg_start: np.ndarray,
    seg_end: np.ndarray,
    t: int,
) -> SectionPlan:
    """Create this year's sections, staff them and place every enrolment segment."""
    b = _Builder(len(seg_school))
    level = level_of_school[seg_school]
    _elementary(b, rng, staff, cat, np.flatnonzero(level == 0), seg_school, seg_grade, t)
    _middle(b, rng, staff, cat, np.flatnonzero(level == 1), seg_school, seg_grade, t)
    rows = np.flatnonzero(level == 2)
    _high(b, rng, staff, cat, rows, seg_school, seg_grade, seg_start, seg_end, t)
    return b.plan()


def _grade_key(rows: np.ndarray, seg_school: np.ndarray, seg_grade: np.ndarray) -> np.ndarray:
    return seg_school[rows].astype(np.int64) * m.N_GRADES + seg_grade[rows]


def _elementary_cap(uniq: np.ndarray) -> np.ndarray:
    grade = uniq % m.N_GRADES
    return np.where(grade <= 3, m.CLASS_SIZE["k3"], m.CLASS_SIZE["g45"])


def _elementary(
    b: _Builder,
    rng: np.random.Generator,
    staff: Staff,
    cat: Catalog,
    rows: np.ndarray,
    seg_school: np.ndarray,
    seg_grade: np.ndarray,
    t: int,
) -> None:
    # Self-contained classrooms: one homeroom teacher teaches all four core subjects.
    uniq, n_cls, cls = _slots(_grade_key(rows, seg_school, seg_grade), _elementary_cap, rng)
    cls_school = np.repeat(uniq // m.N_GRADES, n_cls)
    cls_grade = np.repeat(uniq % m.N_GRADES, n_cls)
    teacher = np.empty(len(cls_school), np.int32)
    for s in np.unique(cls_school):
        idx = np.flatnonzero(cls_school == s)
        teacher[idx] = staff.staff_elementary(rng, int(s), cls_grade[idx].astype(np.int8), t)
    for s in range(4):
        first = b.sections(cat.elem[cls_grade, s], TERM_YEAR, cls_school, teacher)
        b.members.append((rows, first + cls))
    b.seg_teacher[rows, 0] = teacher[cls]
    b.seg_teacher[rows, 1] = teacher[cls]


def _middle(
    b: _Builder,
    rng: np.random.Generator,
    staff: Staff,
    cat: Catalog,
    rows: np.ndarray,
    seg_school: np.ndarray,
    seg_grade: np.ndarray,
    t: int,
) -> None:
    # Year-long subject classes; rosters are drawn independently per subject, as students
    # in a middle school meet different classmates in each period.
    cap = m.CLASS_SIZE["middle"]
    for s, kind in enumerate(CORE_KINDS):
        uniq, n_cls, cls = _slots(_grade_key(rows, seg_school, seg_grade), cap, rng)
        sec_school = np.repeat(uniq // m.N_GRADES, n_cls)
        sec_grade = np.repeat(uniq % m.N_GRADES, n_cls)
        teacher = _block_teachers(staff, rng, sec_school, kind, t)
        first = b.sections(cat.mid[sec_grade, s], TERM_YEAR, sec_school, teacher)
        b.members.append((rows, first + cls))
        if s < 2:
            b.seg_teacher[rows, s] = teacher[cls]
    n_el = len(MID_ELECTIVES)
    key = seg_school[rows].astype(np.int64) * n_el + rng.integers(0, n_el, len(rows))
    uniq, n_cls, cls = _slots(key, cap, rng)
    sec_key = np.repeat(uniq, n_cls)
    teacher = np.empty(len(sec_key), np.int32)
    for e in range(n_el):
        sel = np.flatnonzero(sec_key % n_el == e)
        teacher[sel] = _block_teachers(staff, rng, sec_key[sel] // n_el, f"mid_elective{e}", t)
    first = b.sections(cat.mid_elective[sec_key % n_el], TERM_YEAR, sec_key // n_el, teacher)
    b.members.append((rows, first + cls))


def _high(
    b: _Builder,
    rng: np.random.Generator,
    staff: Staff,
    cat: Catalog,
    rows: np.ndarray,
    seg_school: np.ndarray,
    seg_grade: np.ndarray,
    seg_start: np.ndarray,
    seg_end: np.ndarray,
    t: int,
) -> None:
    # Semester sections. Core subjects keep the same class (and teacher) in both halves, so
    # a student's math teacher of record is one person for the year.
    in_fall = seg_start[rows] < m.SEMESTER_SPLIT
    in_spring = seg_end[rows] >= m.SEMESTER_SPLIT
    cap = m.CLASS_SIZE["high"]
    for s, kind in enumerate(CORE_KINDS):
        uniq, n_cls, cls = _slots(_grade_key(rows, seg_school, seg_grade), cap, rng)
        sec_school = np.repeat(uniq // m.N_GRADES, n_cls)
        sec_grade = np.repeat(uniq % m.N_GRADES, n_cls)
        teacher = _block_teachers(staff, rng, sec_school, kind, t)
        fall = b.sections(cat.high[sec_grade, s, 0], TERM_FALL, sec_school, teacher)
        spring = b.sections(cat.high[sec_grade, s, 1], TERM_SPRING, sec_school, teacher)
        b.members.append((rows[in_fall], fall + cls[in_fall]))
        b.members.append((rows[in_spring], spring + cls[in_spring]))
        if s < 2:
            b.seg_teacher[rows, s] = teacher[cls]
    # Electives: two different ones each semester, mixed grades; an elective teacher keeps
    # the same load in both semesters.
    n_el = len(HIGH_ELECTIVES)
    plans: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
    for term, present in ((TERM_FALL, in_fall), (TERM_SPRING, in_spring)):
        r = rows[present]
        e1 = rng.integers(0, n_el, len(r))
        e2 = (e1 + 1 + rng.integers(0, n_el - 1, len(r))) % n_el
        both = np.concatenate([r, r])
        key = seg_school[both].astype(np.int64) * n_el + np.concatenate([e1, e2])
        uniq, n_cls, cls = _slots(key, cap, rng)
        plans.append((term, both, np.repeat(uniq, n_cls), cls))
    pools: dict[int, np.ndarray] = {}
    for k in np.unique(np.concatenate([p[2] for p in plans])):
        need = max(int(np.sum(p[2] == k)) for p in plans)
        n_t = -(-need // m.SECTIONS_PER_TEACHER)
        pools[int(k)] = staff.staff(rng, int(k // n_el), f"high_elective{k % n_el}", n_t, t)
    for term, both, sec_key, cls in plans:
        teacher = np.empty(len(sec_key), np.int32)
        for k in np.unique(sec_key):
            idx = np.flatnonzero(sec_key == k)
            teacher[idx] = pools[int(k)][np.arange(len(idx)) // m.SECTIONS_PER_TEACHER]
        first = b.sections(cat.high_elective[sec_key % n_el], term, sec_key // n_el, teacher)
        b.members.append((both, first + cls))
