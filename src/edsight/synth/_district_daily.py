"""Daily attendance events and discipline incidents for one school year (private)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edsight.synth import _district_model as m

ABSENT_EXCUSED, ABSENT_UNEXCUSED, TARDY = 0, 1, 2
STATUS_NAMES = ("absent_excused", "absent_unexcused", "tardy")
SEVERITY_NAMES = ("minor", "major", "state_offense")


@dataclass(frozen=True)
class Attendance:
    """Non-present events of one year, in (day, student) order."""

    pos: np.ndarray  # int32 roster position
    day: np.ndarray  # int16 day index in the calendar
    status: np.ndarray  # int8 code into STATUS_NAMES
    n_absent: np.ndarray  # per roster position
    absent_key: np.ndarray  # sorted day * n + pos of absences, for membership tests

    def absent_on(self, pos: np.ndarray, day: np.ndarray, n: int) -> np.ndarray:
        """Whether each (pos, day) pair is an absence."""
        key = day.astype(np.int64) * n + pos
        if len(self.absent_key) == 0:
            return np.zeros(len(key), bool)
        i = np.minimum(np.searchsorted(self.absent_key, key), len(self.absent_key) - 1)
        return np.asarray(self.absent_key[i] == key)


def simulate_attendance(
    rng: np.random.Generator,
    start: np.ndarray,
    end: np.ndarray,
    p_absent: np.ndarray,
    p_tardy: np.ndarray,
    p_unexcused: np.ndarray,
    day_mult: np.ndarray,
) -> Attendance:
    """Two-state (present/absent) Markov chain per student, stepped one day at a time.

    ``P(absent | absent yesterday) = p + lam (1 - p)`` and ``P(absent | present) = p (1 - lam)``
    keep the long-run rate at ``p`` while producing realistic absence spells; the day
    multiplier scales the entry probability. One uniform per student-day decides absent
    (low end) or tardy (high end), so the two never collide.
    """
    n = len(start)
    lam = m.ABSENCE_PERSISTENCE
    p = p_absent.astype(np.float32)
    enter = p * np.float32(1 - lam)
    stay = p + np.float32(lam) * (1 - p)
    tardy_cut = (1 - p_tardy).astype(np.float32)
    prev = np.zeros(n, bool)
    pos_parts: list[np.ndarray] = []
    day_parts: list[np.ndarray] = []
    kind_parts: list[np.ndarray] = []
    for d in range(len(day_mult)):
        u = rng.random(n, dtype=np.float32)
        active = (start <= d) & (end >= d)
        absent = (u < np.where(prev, stay, enter * day_mult[d])) & active
        tardy = (u >= tardy_cut) & active
        tardy &= ~absent
        prev = absent
        ev = np.flatnonzero(absent | tardy)
        pos_parts.append(ev.astype(np.int32))
        day_parts.append(np.full(len(ev), d, np.int16))
        kind_parts.append(np.where(tardy[ev], TARDY, ABSENT_EXCUSED).astype(np.int8))
    pos = np.concatenate(pos_parts) if pos_parts else np.zeros(0, np.int32)
    day = np.concatenate(day_parts) if day_parts else np.zeros(0, np.int16)
    status = np.concatenate(kind_parts) if kind_parts else np.zeros(0, np.int8)
    is_abs = status != TARDY
    unexcused = rng.random(len(pos)) < p_unexcused[pos]
    status[is_abs & unexcused] = ABSENT_UNEXCUSED
    abs_pos = pos[is_abs]
    return Attendance(
        pos=pos,
        day=day,
        status=status,
        n_absent=np.bincount(abs_pos, minlength=n),
        absent_key=day[is_abs].astype(np.int64) * n + abs_pos,
    )


def simulate_discipline(
    rng: np.random.Generator,
    rate: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    p_absent: np.ndarray,
    level: np.ndarray,
    att: Attendance,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Incidents as (pos, day, severity code); ``rate`` is per full year enrolled.

    Incidents are first placed uniformly in the enrolment window and dropped when they fall
    on a day the student was absent; the rate is inflated by 1/(1 - p) to compensate.
    """
    n = len(start)
    days = (end - start + 1).astype(np.float64)
    lam = rate * days / m.N_DAYS / np.maximum(1 - p_absent, 0.2)
    count = rng.poisson(lam)
    pos = np.repeat(np.arange(n, dtype=np.int32), count)
    day = (start[pos] + np.floor(rng.random(len(pos)) * days[pos])).astype(np.int16)
    keep = ~att.absent_on(pos, day, n)
    pos, day = pos[keep], day[keep]
    order = np.lexsort((pos, day))
    pos, day = pos[order], day[order]
    probs = np.asarray([m.SEVERITY_PROBS[name] for name in m.LEVEL_NAMES])
    cum = np.cumsum(probs[level[pos]], axis=1)
    u = rng.random(len(pos))[:, None]
    severity = np.minimum((u >= cum).sum(axis=1), 2).astype(np.int8)
    return pos, day, severity
