"""Teacher and school value-added with empirical-Bayes shrinkage and drift.

Per subject:

1. Covariate adjustment. The current score (standardised within school year and grade, or
   raw scale points) is regressed on a cubic in the same-subject prior score, the other
   subjects' prior scores (0 plus a missing indicator when absent), optional demographic
   covariates and grade-year dummies, *within teacher-year* (teacher-year fixed effects),
   so the coefficients come from differences between classmates and are not contaminated
   by which teachers get which students (Chetty, Friedman and Rockoff 2014).
2. Residuals ``y - X b`` centred within grade-year: a student's residual carries the
   school's and teacher's contribution relative to the average student that year and grade.
3. Teacher-year mean residuals are combined across years by their estimated
   autocovariance (:mod:`edsight.stats._vam_drift`): posterior means with variances (the
   empirical-Bayes shrinkage), leave-year-out forecasts, reliability, and the
   precision-weighted multi-year teacher mean.
4. School effects: school mean residuals (all students and years) shrunk with a
   Paule-Mandel between-school variance.

All effects are in the units of the outcome: student SDs when ``standardize=True``,
scale points otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
import pandas as pd

from edsight.errors import InvalidInput
from edsight.stats._vam_drift import autocovariance, drift_blp
from edsight.stats._vam_eiv import Term, correction, within_ols
from edsight.stats._vam_frame import (
    COURSE_TO_TEST_SUBJECT,
    FRAME_COLUMNS,
    add_prior_scores,
    vam_frame_from_tables,
    vam_frame_from_warehouse,
)
from edsight.stats._vam_school import school_effects

__all__ = [
    "COURSE_TO_TEST_SUBJECT",
    "FRAME_COLUMNS",
    "ValueAddedModel",
    "school_value_added",
    "teacher_value_added",
    "value_added_tables",
    "vam_frame_from_tables",
    "vam_frame_from_warehouse",
]

log = logging.getLogger(__name__)

REQUIRED = ("person_id", "school_year", "subject", "grade_level", "score", "teacher_id", "school_id")


def _codes(*cols: pd.Series) -> np.ndarray:
    """Dense integer codes for the combination of columns."""
    if len(cols) == 1:
        return pd.factorize(cols[0], sort=True)[0]
    return pd.MultiIndex.from_arrays(list(cols)).factorize()[0]


def _demean(a: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Subtract group means (rows of ``a`` grouped by ``codes``)."""
    k = int(codes.max()) + 1
    cnt = np.bincount(codes, minlength=k).astype(float)
    if a.ndim == 1:
        return a - (np.bincount(codes, weights=a, minlength=k) / cnt)[codes]
    out = np.empty_like(a)
    for j in range(a.shape[1]):
        out[:, j] = a[:, j] - (np.bincount(codes, weights=a[:, j], minlength=k) / cnt)[codes]
    return out


def _covariate_matrix(d: pd.DataFrame, covariates: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Numeric design columns for demographic covariates (categories as dummies)."""
    blocks: list[np.ndarray] = []
    names: list[str] = []
    for col in covariates:
        s = d[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            v = pd.to_numeric(s.astype("float64"), errors="coerce").to_numpy(float)
            blocks.append(np.nan_to_num(v, nan=0.0))
            names.append(col)
            continue
        dummies = pd.get_dummies(s.astype("object").fillna("(missing)"), prefix=col, drop_first=True)
        blocks.extend(dummies.to_numpy(float).T)
        names.extend(dummies.columns.astype(str))
    if not blocks:
        return np.zeros((len(d), 0)), []
    return np.column_stack(blocks), names


class ValueAddedModel:
    """Covariate-adjusted, shrunken, drift-aware teacher and school value-added.

    Fitted attributes: ``teacher_year_effects_``, ``teacher_effects_``,
    ``school_effects_`` (DataFrames), ``components_`` (variance components and
    autocovariances per subject), ``coefficients_`` (adjustment regression per subject),
    ``residuals_`` (the student-level analysis rows with their residuals).
    """

    def __init__(
        self,
        *,
        covariates: Sequence[str] = (),
        standardize: bool = True,
        min_dosage: float = 0.5,
        min_students: int = 1,
        level: float = 0.95,
    ) -> None:
        self.covariates = covariates
        self.standardize = standardize
        self.min_dosage = min_dosage
        self.min_students = min_students
        self.level = level

    def _validate(self, frame: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(frame, pd.DataFrame):
            raise InvalidInput("value-added: expected a DataFrame")
        missing = [c for c in (*REQUIRED, *self.covariates) if c not in frame.columns]
        if missing:
            raise InvalidInput(f"value-added frame: missing column(s) {', '.join(missing)}")
        if not 0.0 < self.level < 1.0:
            raise InvalidInput(f"value-added: level must be in (0, 1), got {self.level}")
        if frame.empty:
            raise InvalidInput("value-added frame: no rows")
        d = frame.copy()
        d["score"] = pd.to_numeric(d["score"], errors="coerce").astype("float64")
        d["school_year"] = pd.to_numeric(d["school_year"], errors="coerce").astype("int64")
        d["grade_level"] = pd.to_numeric(d["grade_level"], errors="coerce").astype("float64")
        for c in ("person_id", "subject", "teacher_id", "school_id"):
            d[c] = d[c].astype("object")
        if "dosage" not in d.columns:
            d["dosage"] = 1.0
        return d

    def fit(self, frame: pd.DataFrame) -> ValueAddedModel:
        """Estimate value-added from a long student-year-subject frame (see ``FRAME_COLUMNS``)."""
        d = self._validate(frame)
        subjects = sorted(d["subject"].dropna().unique().tolist())
        if not any(c.startswith("prior_") for c in d.columns):
            d = add_prior_scores(d, subjects)
        z = NormalDist().inv_cdf(0.5 + self.level / 2)
        ty_parts, t_parts, s_parts, comp, coefs, resid = [], [], [], [], [], []
        for subject in subjects:
            out = self._fit_subject(d, subject, subjects, z)
            if out is None:
                continue
            ty, t, s, c, b, r = out
            ty_parts.append(ty)
            t_parts.append(t)
            s_parts.append(s)
            comp.append(c)
            coefs.append(b)
            resid.append(r)
        if not ty_parts:
            raise InvalidInput("value-added: no subject has linked students with prior scores")
        self.teacher_year_effects_ = pd.concat(ty_parts, ignore_index=True)
        self.teacher_effects_ = pd.concat(t_parts, ignore_index=True)
        self.school_effects_ = pd.concat(s_parts, ignore_index=True)
        self.components_ = pd.DataFrame(comp)
        self.coefficients_ = pd.concat(coefs, ignore_index=True)
        self.residuals_ = pd.concat(resid, ignore_index=True)
        return self

    def _fit_subject(
        self, d: pd.DataFrame, subject: str, subjects: list[str], z: float
    ) -> (
        tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, object], pd.DataFrame, pd.DataFrame] | None
    ):
        same = f"prior_{subject}"
        rows = d[
            (d["subject"] == subject)
            & d["teacher_id"].notna()
            & d["school_id"].notna()
            & d["score"].notna()
            & d[same].notna()
            & (d["dosage"].fillna(0.0) >= self.min_dosage)
        ].reset_index(drop=True)
        if len(rows) < 50:
            log.warning("value-added: subject %s has %d usable rows; skipped", subject, len(rows))
            return None
        cell = _codes(rows["school_year"], rows["grade_level"])
        y = rows["score"].to_numpy(float)
        if self.standardize:
            k = int(cell.max()) + 1
            cnt = np.bincount(cell, minlength=k)
            mu = np.bincount(cell, weights=y, minlength=k) / cnt
            sd = np.sqrt(np.bincount(cell, weights=(y - mu[cell]) ** 2, minlength=k) / np.maximum(cnt - 1, 1))
            y = (y - mu[cell]) / np.where(sd > 0, sd, 1.0)[cell]
        terms, names = self._design(rows, subject, subjects)
        x = np.column_stack([t.column() for t in terms])
        n_x = x.shape[1]
        cell_dummies = np.eye(int(cell.max()) + 1)[cell][:, 1:]
        ty_code = _codes(rows["teacher_id"], rows["school_year"])
        xd = _demean(np.column_stack([x, cell_dummies]), ty_code)
        yd = _demean(y, ty_code)
        noisy = [j for j, t in enumerate(terms) if t.s2 is not None]
        corr = correction([terms[j] for j in noisy], ty_code) if noisy else None
        beta, corrected = within_ols(xd, yd, noisy, corr)
        beta = beta[:n_x]
        r = y - x @ beta
        r = _demean(r, cell)
        rows = rows.assign(outcome=y, residual=r)

        # Within teacher-year residual variance: the student-level sampling noise.
        r_within = _demean(r, ty_code)
        n_ty = int(ty_code.max()) + 1
        dof = max(len(r) - n_ty - n_x, 1)
        sigma2 = float(np.sum(r_within**2) / dof)

        means = rows.groupby(["teacher_id", "school_year"], as_index=False).agg(
            rbar=("residual", "mean"), n=("residual", "size")
        )
        main_school = (
            rows.groupby(["teacher_id", "school_year", "school_id"])
            .size()
            .rename("k")
            .reset_index()
            .sort_values(["teacher_id", "school_year", "k", "school_id"], ascending=[True, True, False, True])
            .drop_duplicates(["teacher_id", "school_year"])[["teacher_id", "school_year", "school_id"]]
        )
        means = means[means["n"] >= self.min_students]
        years = sorted(means["school_year"].unique().tolist())
        first = int(years[0])
        n_years = int(years[-1]) - first + 1
        means["year_index"] = means["school_year"] - first
        acov, pairs = autocovariance(means, sigma2, n_years)
        ty, teacher = drift_blp(means, acov, sigma2, n_years)
        ty["school_year"] = ty["year_index"] + first
        ty = ty.drop(columns="year_index").merge(
            means[["teacher_id", "school_year", "n", "rbar"]], on=["teacher_id", "school_year"]
        )
        ty = ty.merge(main_school, on=["teacher_id", "school_year"], how="left")
        school = school_effects(rows, r_within, sigma2, len(r) / dof, z)
        school["subject"] = subject

        # A teacher's school is where they taught most students; within-school effect is
        # the teacher's effect net of that school's shrunken effect.
        t_school = (
            ty.groupby(["teacher_id", "school_id"])["n"]
            .sum()
            .rename("k")
            .reset_index()
            .sort_values(["teacher_id", "k", "school_id"], ascending=[True, False, True])
            .drop_duplicates("teacher_id")[["teacher_id", "school_id"]]
        )
        teacher = teacher.merge(t_school, on="teacher_id", how="left")
        teacher = teacher.merge(
            school[["school_id", "effect"]].rename(columns={"effect": "school_effect"}),
            on="school_id",
            how="left",
        )
        teacher["effect_within_school"] = teacher["effect"] - teacher["school_effect"].fillna(0.0)
        # n: distinct students behind each published estimate (for small-cell suppression);
        # ``students`` counts student-years.
        distinct = rows.groupby("teacher_id")["person_id"].nunique().rename("n")
        teacher = teacher.merge(distinct, left_on="teacher_id", right_index=True, how="left")
        for tab, se_from in ((ty, "effect_var"), (teacher, "effect_var")):
            tab["se"] = np.sqrt(tab[se_from])
            tab["lower"] = tab["effect"] - z * tab["se"]
            tab["upper"] = tab["effect"] + z * tab["se"]
            tab["subject"] = subject
        ty["forecast_se"] = np.sqrt(ty["forecast_var"])
        ty = ty.rename(columns={"rbar": "raw_mean", "n": "students"})
        ty["n"] = ty["students"]
        ty = ty[
            [
                "subject",
                "teacher_id",
                "school_year",
                "school_id",
                "n",
                "students",
                "raw_mean",
                "effect",
                "se",
                "lower",
                "upper",
                "reliability",
                "forecast",
                "forecast_se",
            ]
        ]
        teacher = teacher[
            [
                "subject",
                "teacher_id",
                "school_id",
                "years",
                "n",
                "students",
                "raw_mean",
                "effect",
                "se",
                "lower",
                "upper",
                "reliability",
                "effect_within_school",
            ]
        ]
        comp: dict[str, object] = {
            "subject": subject,
            "n": int(rows["person_id"].nunique()),
            "students": len(rows),
            "teachers": int(teacher.shape[0]),
            "teacher_years": int(ty.shape[0]),
            "schools": int(school.shape[0]),
            "sigma2_within": sigma2,
            "prior_error_correction": corrected,
            "sd_teacher_year": float(np.sqrt(acov[0])),
            "sd_teacher_persistent": float(np.sqrt(acov[-1])) if n_years > 1 else float("nan"),
            "autocovariance": [float(a) for a in acov],
            "autocorrelation": [float(a / acov[0]) for a in acov],
            "pairs": [int(p) for p in pairs],
            "sd_school": float(school.attrs.get("sd_school", float("nan"))),
            "student_lag_correlation": school.attrs.get("student_lag_correlation", []),
            "mean_reliability_teacher_year": float(ty["reliability"].mean()),
            "mean_reliability_teacher": float(teacher["reliability"].mean()),
            "mean_reliability_school": float(school["reliability"].mean()),
        }
        coef = pd.DataFrame({"subject": subject, "term": names, "estimate": beta, "n": comp["n"]})
        keep = [
            "subject",
            "person_id",
            "school_year",
            "grade_level",
            "teacher_id",
            "school_id",
            "outcome",
            "residual",
        ]
        log.info(
            "value-added %s: %d students, %d teacher-years, sd_teacher_year %.3f",
            subject,
            len(rows),
            len(ty),
            comp["sd_teacher_year"],
        )
        return ty, teacher, school, comp, coef, rows[keep]

    def _design(self, rows: pd.DataFrame, subject: str, subjects: list[str]) -> tuple[list[Term], list[str]]:
        """Adjustment terms: cubic in the same-subject prior, the other priors (0 plus a
        missing indicator when absent) and the demographic covariates. Priors with a
        ``sem_<prior>`` column are marked error-prone for the measurement-error correction."""

        def s2_of(name: str, miss: np.ndarray) -> np.ndarray | None:
            col = f"sem_{name}"
            if col not in rows.columns:
                return None
            e = pd.to_numeric(rows[col], errors="coerce").to_numpy(float)
            return np.where(miss | np.isnan(e), 0.0, e**2)

        same = f"prior_{subject}"
        p = rows[same].to_numpy(float)
        s2 = s2_of(same, np.zeros(len(p), dtype=bool))
        terms = [Term(p, same, k, s2) for k in (1, 2, 3)]
        names = [same, f"{same}^2", f"{same}^3"]
        extra = [f"prior_{o}" for o in subjects if o != subject]
        extra += sorted(c for c in rows.columns if c.startswith("prior") and c[5:6].isdigit())
        for name in extra:
            v = rows[name].to_numpy(float)
            miss = np.isnan(v)
            if miss.all():
                continue
            terms += [Term(np.where(miss, 0.0, v), name, 1, s2_of(name, miss)), Term(miss.astype(float))]
            names += [name, f"{name}_missing"]
        cov, cov_names = _covariate_matrix(rows, self.covariates)
        terms += [Term(cov[:, j]) for j in range(cov.shape[1])]
        names += cov_names
        return terms, names


def value_added_tables(
    frame: pd.DataFrame,
    *,
    covariates: Sequence[str] = (),
    standardize: bool = True,
    min_dosage: float = 0.5,
    level: float = 0.95,
) -> dict[str, pd.DataFrame]:
    """Fit :class:`ValueAddedModel`; return its tables.

    Keys: teacher, teacher_year, school, components, coefficients.
    """
    m = ValueAddedModel(covariates=covariates, standardize=standardize, min_dosage=min_dosage, level=level)
    m.fit(frame)
    return {
        "teacher": m.teacher_effects_,
        "teacher_year": m.teacher_year_effects_,
        "school": m.school_effects_,
        "components": m.components_,
        "coefficients": m.coefficients_,
    }


def teacher_value_added(
    frame: pd.DataFrame, *, covariates: Sequence[str] = (), by_year: bool = False, level: float = 0.95
) -> pd.DataFrame:
    """Teacher value-added (multi-year mean, or per year with ``by_year``) with intervals."""
    t = value_added_tables(frame, covariates=covariates, level=level)
    return t["teacher_year"] if by_year else t["teacher"]


def school_value_added(
    frame: pd.DataFrame, *, covariates: Sequence[str] = (), level: float = 0.95
) -> pd.DataFrame:
    """Shrunken school value-added per subject with intervals and reliability."""
    return value_added_tables(frame, covariates=covariates, level=level)["school"]
