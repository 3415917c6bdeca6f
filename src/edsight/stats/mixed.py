"""Hierarchical linear models (linear mixed models) that agree with R's lme4.

``fit_lmm(data, "y ~ x + (1 + x | school) + (1 | teacher)")`` fits by REML (or ML) with
lme4's penalized least squares and returns an :class:`LmmResult` whose fixed effects,
``VarCorr`` table and criterion use lme4's names and conventions. See docs/stats-hlm.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from edsight.errors import InvalidInput
from edsight.stats._mixed_formula import (
    Coding,
    FormulaSpec,
    TermSpec,
    group_codes,
    is_categorical,
    model_matrix,
    parse_formula,
)
from edsight.stats._mixed_nested import NestedPls, nested_parents
from edsight.stats._mixed_pls import PlsProblem, ReBlock, theta_lower, theta_start

__all__ = ["LinearMixedModel", "LmmResult", "RandomTerm", "criterion_function", "fit_lmm"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RandomTerm:
    """A fitted random-effect term: grouping name, its variables, levels and columns."""

    group: str
    factors: tuple[str, ...]
    lhs: TermSpec
    columns: tuple[str, ...]
    levels: tuple[str, ...]


@dataclass
class LmmResult:
    """A fitted linear mixed model; DataFrame views follow lme4's accessors."""

    formula: str
    spec: FormulaSpec
    reml: bool
    n_obs: int
    fixef_names: list[str]
    beta: np.ndarray
    beta_cov: np.ndarray
    sigma2: float
    theta: np.ndarray
    terms: list[RandomTerm]
    covariances: list[np.ndarray]  # per term, q x q covariance of the random effects
    ranef_values: list[np.ndarray]  # per term, (levels, q) conditional modes
    ranef_condvar: list[np.ndarray]  # per term, (levels, q, q) conditional covariances
    criterion: float
    seconds: float
    converged: bool
    evaluations: int
    coding: Coding
    data: pd.DataFrame = field(repr=False)

    @property
    def fixef(self) -> dict[str, float]:
        """Fixed effects by lme4 term name."""
        return {name: float(v) for name, v in zip(self.fixef_names, self.beta, strict=True)}

    def fixed_effects(self) -> pd.DataFrame:
        """Fixed effects with standard errors and t values (as ``summary(m)$coefficients``)."""
        se = np.sqrt(np.diag(self.beta_cov))
        return pd.DataFrame(
            {"term": self.fixef_names, "estimate": self.beta, "std_error": se, "t_value": self.beta / se}
        )

    def varcorr(self) -> pd.DataFrame:
        """``as.data.frame(VarCorr(m))``: grp, var1, var2, vcov, sdcor (variances, then covariances)."""
        rows: list[dict[str, Any]] = []
        for term, cov in zip(self.terms, self.covariances, strict=True):
            sd = np.sqrt(np.diag(cov))
            for i, name in enumerate(term.columns):
                rows.append({"grp": term.group, "var1": name, "var2": "", "vcov": cov[i, i], "sdcor": sd[i]})
            q = len(term.columns)
            for j in range(q):
                for i in range(j + 1, q):
                    corr = cov[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else float("nan")
                    rows.append(
                        {
                            "grp": term.group,
                            "var1": term.columns[j],
                            "var2": term.columns[i],
                            "vcov": cov[i, j],
                            "sdcor": corr,
                        }
                    )
        rows.append(
            {"grp": "Residual", "var1": "", "var2": "", "vcov": self.sigma2, "sdcor": np.sqrt(self.sigma2)}
        )
        return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])

    def ranef(self) -> pd.DataFrame:
        """Conditional modes with conditional SDs (``as.data.frame(ranef(m, condVar = TRUE))``)."""
        frames: list[pd.DataFrame] = []
        for term, values, cv in zip(self.terms, self.ranef_values, self.ranef_condvar, strict=True):
            nl, q = values.shape
            sds = np.sqrt(np.maximum(np.diagonal(cv, axis1=1, axis2=2), 0.0))
            frames.append(
                pd.DataFrame(
                    {
                        "grpvar": term.group,
                        "term": np.repeat(np.array(term.columns, dtype=object)[None, :], nl, 0).T.ravel(),
                        "grp": np.tile(np.array(term.levels, dtype=object), q),
                        "condval": values.T.ravel(),
                        "condsd": sds.T.ravel(),
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)

    def to_dict(self) -> dict[str, Any]:
        """The CLI's JSON contract: {fixef, vcov, reml_crit, seconds}."""
        vc = self.varcorr()
        return {
            "fixef": self.fixef,
            "vcov": [
                {"grp": str(g), "var1": str(a), "var2": str(b), "vcov": float(v)}
                for g, a, b, v in zip(
                    vc["grp"], vc["var1"], vc["var2"], vc["vcov"].to_numpy(float), strict=True
                )
            ],
            "reml_crit": float(self.criterion),
            "seconds": float(self.seconds),
        }

    def predict(
        self, newdata: pd.DataFrame | None = None, *, groups: list[str] | None = None, level: float = 0.95
    ) -> pd.DataFrame:
        """Predictions with intervals; ``groups`` limits the random terms used (None = all)."""
        from edsight.stats._mixed_predict import predict_frame

        return predict_frame(self, self.data if newdata is None else newdata, groups=groups, level=level)

    def growth_curves(
        self, *, time: str, group: str, times: list[float] | None = None, level: float = 0.95
    ) -> pd.DataFrame:
        """Predicted trajectory over ``time`` for every level of ``group`` with intervals."""
        from edsight.stats._mixed_predict import growth_curves

        return growth_curves(self, time=time, group=group, times=times, level=level)


def _validate(data: pd.DataFrame, spec: FormulaSpec, formula: str) -> pd.DataFrame:
    if not isinstance(data, pd.DataFrame):
        raise InvalidInput(f"data must be a pandas DataFrame, got {type(data).__name__}")
    needed = spec.variables()
    missing = [c for c in needed if c not in data.columns]
    if missing:
        raise InvalidInput(f"formula {formula!r} names columns not in the data: {', '.join(missing)}")
    frame = data[needed]
    complete = frame.dropna()
    if len(complete) < len(frame):
        # lme4's default na.action drops incomplete rows too
        log.info("dropped %d of %d rows with missing values", len(frame) - len(complete), len(frame))
    if complete.empty:
        raise InvalidInput("no complete rows for the variables in the formula")
    if is_categorical(complete[spec.response]):
        raise InvalidInput(f"response {spec.response!r} must be numeric, got {complete[spec.response].dtype}")
    numeric = [c for c in needed if not is_categorical(complete[c])]
    values = complete[numeric].to_numpy(dtype=float)
    if not np.isfinite(values).all():
        raise InvalidInput("numeric columns in the formula contain infinite values")
    return complete.reset_index(drop=True)


def _blocks(data: pd.DataFrame, spec: FormulaSpec, coding: Coding) -> tuple[list[ReBlock], list[RandomTerm]]:
    built: list[tuple[ReBlock, RandomTerm]] = []
    for r in spec.random:
        codes, levels = group_codes(data, r.factors)
        z, names = model_matrix(r.lhs, data, coding)
        if z.shape[1] == 0:
            raise InvalidInput(f"random-effect term for {r.group_name!r} has no columns")
        if len(levels) < 2:
            raise InvalidInput(f"grouping factor {r.group_name!r} has only one level; it needs at least two")
        if len(levels) >= len(data):
            raise InvalidInput(
                f"grouping factor {r.group_name!r} has {len(levels)} levels for {len(data)} observations; "
                "it must have fewer levels than observations"
            )
        term = RandomTerm(r.group_name, r.factors, r.lhs, tuple(names), tuple(levels))
        built.append((ReBlock(codes=codes, n_levels=len(levels), zcols=z), term))
    # lme4 orders terms by decreasing number of levels (stable for ties)
    built.sort(key=lambda bt: -bt[0].n_levels)
    seen: dict[str, int] = {}
    terms: list[RandomTerm] = []
    for _b, t in built:
        # repeated grouping names (from ||) get make.unique suffixes, as in lme4
        k = seen.get(t.group, 0)
        seen[t.group] = k + 1
        terms.append(t if k == 0 else RandomTerm(f"{t.group}.{k}", t.factors, t.lhs, t.columns, t.levels))
    return [b for b, _t in built], terms


SOLVERS = ("auto", "nested", "general")


def pls_problem(
    blocks: list[ReBlock], x: np.ndarray, y: np.ndarray, *, reml: bool, solver: str = "auto"
) -> PlsProblem | NestedPls:
    """The profiled criterion for these terms.

    ``auto`` takes the nested path (per-level sufficient statistics) when each term's levels
    lie inside the next term's, else the general one (crossed designs); ``nested`` and
    ``general`` force one (the results agree; ``general`` exists to compare).
    """
    if solver not in SOLVERS:
        raise InvalidInput(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    parents = nested_parents(blocks) if solver != "general" else None
    if parents is not None:
        return NestedPls(blocks, x, y, parents, reml=reml)
    if solver == "nested":
        raise InvalidInput("solver='nested' needs each grouping factor nested in the next coarser one")
    return PlsProblem(blocks, x, y, reml=reml)


def _minimize(
    problem: PlsProblem | NestedPls, start: np.ndarray, lower: np.ndarray
) -> tuple[np.ndarray, bool]:
    """BOBYQA (bound-constrained, derivative-free), the optimiser lme4 uses by default.

    NLopt's C implementation with lme4's ``nloptwrap`` tolerances: the profiled criterion
    costs about 2 ms on a few thousand rows, so the optimiser's own overhead matters.
    """
    import nlopt

    opt = nlopt.opt(nlopt.LN_BOBYQA, len(start))
    opt.set_lower_bounds(np.where(np.isfinite(lower), lower, -1e10))
    opt.set_upper_bounds(np.full(len(lower), 1e10))
    best: dict[str, Any] = {"f": np.inf, "theta": np.asarray(start, dtype=float)}

    def objective(theta: np.ndarray, _grad: np.ndarray) -> float:
        value = float(problem.objective(np.asarray(theta)))
        if value < best["f"]:
            best["f"], best["theta"] = value, np.array(theta, dtype=float)
        return value

    opt.set_min_objective(objective)
    opt.set_ftol_abs(1e-10)
    opt.set_ftol_rel(1e-12)
    opt.set_xtol_abs(1e-10)
    opt.set_initial_step(np.full(len(start), 0.2))
    opt.set_maxeval(2000 * len(start) + 500)
    try:
        opt.optimize(np.asarray(start, dtype=float))
    except nlopt.RoundoffLimited:
        # Converged as far as floating point allows; the best point seen is the answer.
        return best["theta"], True
    theta = best["theta"]
    result = opt.last_optimize_result()
    ok = result in (nlopt.SUCCESS, nlopt.FTOL_REACHED, nlopt.XTOL_REACHED, nlopt.STOPVAL_REACHED)
    if not ok:
        log.warning("optimiser stopped early (NLopt code %s)", result)
    return theta, ok


def fit_lmm(
    data: pd.DataFrame,
    formula: str,
    *,
    reml: bool = True,
    levels: Mapping[str, Sequence[str]] | None = None,
    solver: str = "auto",
) -> LmmResult:
    """Fit a linear mixed model written in lme4 syntax by REML (default) or maximum likelihood.

    Categorical covariates use treatment contrasts with the first level as reference: the
    category order of a pandas Categorical, else the order of first appearance; ``levels``
    sets the order per column (like R's ``factor(x, levels = ...)``). ``solver`` picks the
    factorisation (see :func:`pls_problem`); the default suits every design.

    Raises InvalidInput for a formula it cannot read, columns not in ``data``, a non-numeric
    response, a grouping factor with one level, or a rank-deficient fixed-effect design.
    """
    started = time.perf_counter()
    spec = parse_formula(formula)
    frame = _validate(data, spec, formula)
    coding = Coding.from_data(frame, spec.variables()[1:], levels)
    x, names = model_matrix(spec.fixed, frame, coding)
    if x.shape[1] == 0:
        raise InvalidInput(f"formula {formula!r} has no fixed effects")
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise InvalidInput(f"fixed-effect design of {formula!r} is rank deficient (columns {names})")
    y = frame[spec.response].to_numpy(dtype=float)
    blocks, terms = _blocks(frame, spec, coding)
    problem = pls_problem(blocks, x, y, reml=reml, solver=solver)
    log.debug("%s path for %s", type(problem).__name__, formula)
    theta, converged = _minimize(problem, theta_start(blocks), theta_lower(blocks))
    est = problem.estimates(theta)
    covariances = [est.sigma2 * t @ t.T for t in est.factors]
    seconds = time.perf_counter() - started
    log.info(
        "fitted %s on %d rows in %.2f s (%d evaluations)", formula, len(frame), seconds, problem.evaluations
    )
    return LmmResult(
        formula=formula,
        spec=spec,
        reml=reml,
        n_obs=len(frame),
        fixef_names=names,
        beta=est.beta,
        beta_cov=est.beta_cov,
        sigma2=est.sigma2,
        theta=theta,
        terms=terms,
        covariances=covariances,
        ranef_values=est.ranef,
        ranef_condvar=est.cond_var,
        criterion=est.criterion,
        seconds=seconds,
        converged=converged,
        evaluations=problem.evaluations,
        coding=coding,
        data=frame,
    )


def criterion_function(result: LmmResult) -> Callable[[np.ndarray], float]:
    """The REML criterion (or ML deviance) of ``result``'s model and data as a function of theta."""
    spec = result.spec
    x, _ = model_matrix(spec.fixed, result.data, result.coding)
    y = result.data[spec.response].to_numpy(dtype=float)
    blocks, _terms = _blocks(result.data, spec, result.coding)
    problem = pls_problem(blocks, x, y, reml=result.reml)
    return lambda theta: problem.objective(np.asarray(theta, dtype=float))


class LinearMixedModel:
    """scikit-learn style wrapper: ``LinearMixedModel(formula=...).fit(df).result_``."""

    def __init__(self, *, formula: str, reml: bool = True) -> None:
        self.formula = formula
        self.reml = reml

    def fit(self, data: pd.DataFrame) -> LinearMixedModel:
        """Fit on ``data``; sets ``result_``, ``fixef_`` and ``vcov_``."""
        self.result_ = fit_lmm(data, self.formula, reml=self.reml)
        self.fixef_ = self.result_.fixef
        self.vcov_ = self.result_.varcorr()
        return self

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        """Conditional predictions (fixed plus random effects; unseen levels get none)."""
        return self.result_.predict(data)["fit"].to_numpy()
