"""Linear mixed models: agreement with lme4, exact algebra, recovery, optimality, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edsight.errors import InvalidInput
from edsight.stats._mixed_formula import Coding, model_matrix, parse_formula
from edsight.stats._mixed_nested import NestedPls
from edsight.stats._mixed_pls import PlsProblem, theta_lower, theta_to_factors
from edsight.stats.mixed import (
    LinearMixedModel,
    LmmResult,
    _blocks,
    _validate,
    criterion_function,
    fit_lmm,
    pls_problem,
)
from edsight.stats.plots import plot_growth_curves

DATA = Path(__file__).resolve().parents[1] / "data" / "multilevel"
REF = json.loads((DATA / "lme4_reference.json").read_text())


def _load(name: str) -> pd.DataFrame:
    frame = pd.read_csv(DATA / f"{name}.csv")
    if name == "sleepstudy":
        frame["Subject"] = frame["Subject"].astype(str)
    return frame


@pytest.fixture(scope="module")
def hsb() -> LmmResult:
    return fit_lmm(_load("Hsb82"), REF["Hsb82"]["formula"])


@pytest.fixture(scope="module")
def sleep() -> LmmResult:
    return fit_lmm(_load("sleepstudy"), REF["sleepstudy"]["formula"])


def _simulate_growth(n_schools: int, per_school: int, n_times: int, seed: int) -> pd.DataFrame:
    """Time within student within school, correlated intercept/slope at both levels."""
    rng = np.random.default_rng(seed)
    n_students = n_schools * per_school
    school_of = np.repeat(np.arange(n_schools), per_school)
    u = rng.multivariate_normal([0, 0], SCHOOL_COV, n_schools)
    v = rng.multivariate_normal([0, 0], STUDENT_COV, n_students)
    student = np.repeat(np.arange(n_students), n_times)
    t = np.tile(np.arange(n_times, dtype=float), n_students)
    school = school_of[student]
    y = 200 + 5 * t + u[school, 0] + u[school, 1] * t + v[student, 0] + v[student, 1] * t
    y += rng.normal(0, np.sqrt(RESIDUAL), len(t))
    return pd.DataFrame({"score": y, "time": t, "student": student, "school": school})


SCHOOL_COV = np.array([[4.0, 0.5], [0.5, 0.25]])
STUDENT_COV = np.array([[25.0, 1.5], [1.5, 1.0]])
RESIDUAL = 9.0
GROWTH = "score ~ time + (1 + time | school/student)"


@pytest.fixture(scope="module")
def growth() -> LmmResult:
    return fit_lmm(_simulate_growth(150, 20, 5, seed=11), GROWTH)


@pytest.mark.parametrize("name", ["Hsb82", "sleepstudy"])
def test_agrees_with_lme4(name: str, hsb: LmmResult, sleep: LmmResult) -> None:
    result = hsb if name == "Hsb82" else sleep
    ref = REF[name]
    out = result.to_dict()
    assert list(out["fixef"]) == list(ref["fixef"])  # lme4's names in lme4's order
    for term, value in ref["fixef"].items():
        assert out["fixef"][term] == pytest.approx(value, abs=1e-3)
    assert [(r["grp"], r["var1"], r["var2"]) for r in out["vcov"]] == [
        (r["grp"], r["var1"], r["var2"]) for r in ref["vcov"]
    ]
    for mine, theirs in zip(out["vcov"], ref["vcov"], strict=True):
        assert mine["vcov"] == pytest.approx(theirs["vcov"], rel=0.01)
    # never worse than lme4's optimum, and within rounding of it
    assert out["reml_crit"] <= ref["REMLcrit"] + 1e-6
    assert out["reml_crit"] == pytest.approx(ref["REMLcrit"], abs=1e-3)
    assert out["seconds"] > 0
    json.dumps(out)  # the CLI prints it as JSON


def test_sleepstudy_ml_matches_lme4_loglik() -> None:
    # lme4: logLik(update(fm1, REML = FALSE)) = -875.9697 (df 6)
    ml = fit_lmm(_load("sleepstudy"), REF["sleepstudy"]["formula"], reml=False)
    assert ml.criterion == pytest.approx(2 * 875.9697, abs=2e-3)
    assert ml.fixef["Days"] == pytest.approx(10.46729, abs=1e-3)
    reml = fit_lmm(_load("sleepstudy"), REF["sleepstudy"]["formula"])
    assert ml.varcorr()["vcov"].iloc[0] < reml.varcorr()["vcov"].iloc[0]  # ML shrinks variances


def test_standard_errors_and_ranef_shapes(sleep: LmmResult) -> None:
    fe = sleep.fixed_effects()
    # lme4 summary(fm1): Std. Error 6.825 and 1.546
    assert fe["std_error"].round(3).tolist() == [6.825, 1.546]
    re = sleep.ranef()
    assert set(re.columns) == {"grpvar", "term", "grp", "condval", "condsd"}
    assert len(re) == 18 * 2
    # conditional modes of a random-effect term are centred (REML, balanced design)
    assert abs(re.loc[re["term"] == "Days", "condval"].sum()) < 1e-6
    assert (re["condsd"] > 0).all()


def _dense_reml(problem: PlsProblem, x: np.ndarray, y: np.ndarray, theta: np.ndarray) -> float:
    """The REML criterion straight from the marginal model, V = sigma^2 (Z Lambda Lambda' Z' + I)."""
    zs = []
    for b, t in zip(problem.blocks, theta_to_factors(theta, problem.blocks), strict=True):
        z = b.sparse_z().toarray()
        zs.append(z @ np.kron(np.eye(b.n_levels), t))
    zl = np.hstack(zs)
    n, p = x.shape
    v0 = zl @ zl.T + np.eye(n)
    vinv = np.linalg.inv(v0)
    xtv = x.T @ vinv
    beta = np.linalg.solve(xtv @ x, xtv @ y)
    r = y - x @ beta
    dof = n - p
    return float(
        np.linalg.slogdet(v0)[1]
        + np.linalg.slogdet(xtv @ x)[1]
        + dof * (1 + np.log(2 * np.pi * (r @ vinv @ r) / dof))
    )


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ x + (1 + x | student) + (1 | teacher)",  # crossed
        "y ~ x + (1 + x | school/student)",  # nested, correlated slopes at both levels
        "y ~ x + (1 | student) + (0 + x | teacher) + (1 | school)",  # three terms
    ],
)
def test_profiled_criterion_equals_dense_marginal_likelihood(formula: str) -> None:
    rng = np.random.default_rng(3)
    n = 240
    frame = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "student": rng.integers(0, 30, n),
            "teacher": rng.integers(0, 7, n),
            "school": rng.integers(0, 4, n),
        }
    )
    frame["y"] += frame["x"] + frame["student"] % 5 - frame["teacher"] % 3
    result = fit_lmm(frame, formula)
    x, _ = model_matrix(result.spec.fixed, result.data, result.coding)
    y = result.data["y"].to_numpy(dtype=float)
    blocks, _ = _blocks(result.data, result.spec, result.coding)
    problem = PlsProblem(blocks, x, y, reml=True)
    for theta in (result.theta, result.theta * 0.7 + 0.1, np.abs(rng.normal(size=len(result.theta)))):
        assert problem.objective(theta) == pytest.approx(_dense_reml(problem, x, y, theta), abs=1e-7)
    # conditional modes: b = Lambda Lambda' Z' V0^-1 (y - X beta)
    zl = np.hstack(
        [
            b.sparse_z().toarray() @ np.kron(np.eye(b.n_levels), t)
            for b, t in zip(blocks, theta_to_factors(result.theta, blocks), strict=True)
        ]
    )
    v0 = zl @ zl.T + np.eye(len(y))
    u = zl.T @ np.linalg.solve(v0, y - x @ result.beta)
    lam = np.zeros((zl.shape[1], zl.shape[1]))
    pos = 0
    for b, t in zip(blocks, theta_to_factors(result.theta, blocks), strict=True):
        size = b.n_levels * b.q
        lam[pos : pos + size, pos : pos + size] = np.kron(np.eye(b.n_levels), t)
        pos += size
    expected_b = lam @ u
    got_b = np.concatenate([b.ravel() for b in result.ranef_values])
    np.testing.assert_allclose(got_b, expected_b, atol=1e-8)
    # conditional covariances: sigma^2 Lambda (Lambda'Z'Z Lambda + I)^-1 Lambda'
    z = np.hstack([b.sparse_z().toarray() for b in blocks])
    cov = result.sigma2 * lam @ np.linalg.inv(lam.T @ z.T @ z @ lam + np.eye(len(lam))) @ lam.T
    got_diag = np.concatenate([np.diagonal(c, axis1=1, axis2=2).ravel() for c in result.ranef_condvar])
    np.testing.assert_allclose(got_diag, np.diag(cov), atol=1e-9)


def test_three_level_growth_recovers_known_components(growth: LmmResult) -> None:
    vc = growth.varcorr()
    assert vc["grp"].tolist() == ["student:school"] * 3 + ["school"] * 3 + ["Residual"]
    student = vc[vc["grp"] == "student:school"]["vcov"].to_numpy()
    school = vc[vc["grp"] == "school"]["vcov"].to_numpy()
    # 3,000 students: tight; 150 schools: about 12-30 % sampling error on school components
    np.testing.assert_allclose(student, [25.0, 1.0, 1.5], rtol=0.12)
    np.testing.assert_allclose(school[:2], [4.0, 0.25], rtol=0.35)
    assert abs(school[2] - 0.5) < 0.35
    assert vc["vcov"].iloc[-1] == pytest.approx(RESIDUAL, rel=0.05)
    fe = growth.fixed_effects().set_index("term")
    assert abs(fe.loc["time", "estimate"] - 5.0) < 3 * fe.loc["time", "std_error"]
    assert abs(fe.loc["(Intercept)", "estimate"] - 200.0) < 3 * fe.loc["(Intercept)", "std_error"]


def test_three_level_reml_is_a_minimum(growth: LmmResult) -> None:
    best = growth.criterion
    theta = growth.theta
    profiled_criterion = criterion_function(growth)
    assert profiled_criterion(theta) == pytest.approx(best, abs=1e-9)
    rng = np.random.default_rng(0)
    directions = [*np.eye(len(theta)), *rng.normal(size=(6, len(theta)))]
    for d in directions:
        for h in (1e-3, 1e-2, 1e-1):
            for sign in (1.0, -1.0):
                cand = theta + sign * h * d / np.linalg.norm(d)
                if (cand[[0, 2, 3, 5]] < 0).any():  # outside the diagonal bounds
                    continue
                assert profiled_criterion(cand) >= best - 1e-6


def test_growth_curves_and_predictions(growth: LmmResult) -> None:
    curves = growth.growth_curves(time="time", group="student:school", times=[0.0, 4.0])
    assert len(curves) == 3000 * 2
    assert (curves["lower"] < curves["fit"]).all()
    assert (curves["fit"] < curves["upper"]).all()
    # a student's curve = fixed part + its school's and its own conditional modes
    terms = {t.group: (t, b) for t, b in zip(growth.terms, growth.ranef_values, strict=True)}
    st_term, st_b = terms["student:school"]
    sc_term, sc_b = terms["school"]
    row = curves.iloc[1]  # student 0 at time 4
    i = st_term.levels.index(f"{int(row['student'])}:{int(row['school'])}")
    j = sc_term.levels.index(str(int(row["school"])))
    expected = growth.fixef["(Intercept)"] + 4 * growth.fixef["time"] + st_b[i] @ [1, 4] + sc_b[j] @ [1, 4]
    assert row["fit"] == pytest.approx(expected)
    schools = growth.growth_curves(time="time", group="school")
    assert len(schools) == 150 * 5
    # school curves carry less uncertainty than single-student curves
    assert schools["se"].median() < curves["se"].median()
    unseen = pd.DataFrame({"time": [1.0], "student": [-1], "school": [-1]})
    pred = growth.predict(unseen)
    assert pred["fit"].iloc[0] == pytest.approx(growth.fixef["(Intercept)"] + growth.fixef["time"])


def test_term_names_follow_r() -> None:
    rng = np.random.default_rng(5)
    n = 120
    frame = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "sex": rng.choice(["F", "M"], n),
            "grade": pd.Categorical(rng.choice(["K", "1", "2"], n), categories=["K", "1", "2"]),
            "g": rng.integers(0, 10, n),
        }
    )
    frame.loc[0, "sex"] = "F"
    result = fit_lmm(frame, "y ~ grade*x + sex + (1 | g)")
    assert result.fixef_names == ["(Intercept)", "grade1", "grade2", "x", "sexM", "grade1:x", "grade2:x"]
    no_int = fit_lmm(frame, "y ~ 0 + sex + x:sex + (1 | g)")
    assert no_int.fixef_names == ["sexF", "sexM", "sexF:x", "sexM:x"]
    releveled = fit_lmm(frame, "y ~ sex + (1 | g)", levels={"sex": ["M", "F"]})
    assert releveled.fixef_names == ["(Intercept)", "sexF"]
    split = fit_lmm(frame, "y ~ x + (x || g)")
    assert split.varcorr()["grp"].tolist() == ["g", "g.1", "Residual"]
    assert split.varcorr()["var1"].tolist() == ["(Intercept)", "x", ""]


def test_estimator_wrapper(sleep: LmmResult) -> None:
    model = LinearMixedModel(formula=REF["sleepstudy"]["formula"])
    assert not hasattr(model, "result_")
    model.fit(_load("sleepstudy"))
    assert model.fixef_ == pytest.approx(sleep.fixef)
    pred = model.predict(_load("sleepstudy").head(3))
    assert pred.shape == (3,)


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("Reaction Days + (1 | Subject)", "form 'y ~ terms'"),
        ("Reaction ~ Days + (1 | Subject", "unbalanced parentheses"),
        ("Reaction ~ Days", "no random-effect term"),
        ("Reaction ~ Dayz + (1 | Subject)", "not in the data: Dayz"),
        ("Reaction ~ Days + (1 | Lab)", "one level"),
        ("Subject ~ Days + (1 | Lab)", "must be numeric"),
        ("Reaction ~ log(Days) + (1 | Subject)", "not supported"),
    ],
)
def test_bad_input_is_invalid_input(formula: str, message: str) -> None:
    frame = _load("sleepstudy")
    frame["Lab"] = "A"
    with pytest.raises(InvalidInput, match=message):
        fit_lmm(frame, formula)


def test_rank_deficient_design_is_invalid_input() -> None:
    frame = _load("sleepstudy")
    frame["Days2"] = frame["Days"] * 2
    with pytest.raises(InvalidInput, match="rank deficient"):
        fit_lmm(frame, "Reaction ~ Days + Days2 + (1 | Subject)")


def _district_data(seed: int) -> pd.DataFrame:
    """Unbalanced students within schools within districts, ids shuffled (not in parent order)."""
    rng = np.random.default_rng(seed)
    n_students = 120
    school_of = rng.integers(0, 14, n_students)  # some schools have one student, some none
    district_of_school = rng.integers(0, 4, 14)
    visits = rng.integers(1, 6, n_students)  # 1 to 5 observations per student
    student = np.repeat(rng.permutation(n_students), visits)
    n = len(student)
    x = rng.normal(size=n)
    z = rng.normal(size=n)
    school = school_of[student]
    y = 3 + 2 * x + rng.normal(size=n) + (student % 7) * 0.3 * (1 + x) + (school % 3) * (1 - x)
    return pd.DataFrame(
        {"y": y, "x": x, "z": z, "student": student, "school": school, "district": district_of_school[school]}
    )


def _problems(frame: pd.DataFrame, formula: str, reml: bool) -> tuple[NestedPls | PlsProblem, PlsProblem]:
    spec = parse_formula(formula)
    data = _validate(frame, spec, formula)
    coding = Coding.from_data(data, spec.variables()[1:], None)
    x, _ = model_matrix(spec.fixed, data, coding)
    y = data[spec.response].to_numpy(dtype=float)
    blocks, _ = _blocks(data, spec, coding)
    return pls_problem(blocks, x, y, reml=reml), PlsProblem(blocks, x, y, reml=reml)


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize(
    "formula",
    [
        "y ~ x + (1 + x | school/student)",
        "y ~ x + z + (1 | district) + (1 + x | district:school) + (1 + x + z | district:school:student)",
        "y ~ x + (1 | district/school/student)",
        "y ~ x + (x || student)",  # two terms on the same factor: a chain of equal levels
        "y ~ x + (1 + x + z | student)",
    ],
)
def test_nested_path_equals_general_path(formula: str, reml: bool) -> None:
    nested, general = _problems(_district_data(7), formula, reml)
    assert isinstance(nested, NestedPls)
    rng = np.random.default_rng(1)
    lower = theta_lower(nested.blocks)
    thetas = [np.where(lower == 0, 1.0, 0.0), *np.abs(rng.normal(size=(2, len(lower)))) * 0.8]
    thetas.append(np.where(lower == 0, 0.0, 0.3))  # every variance on its bound: singular T
    thetas[1] = np.where(lower == 0, thetas[1], -thetas[1])  # negative off-diagonals
    for theta in thetas:
        assert nested.objective(theta) == pytest.approx(general.objective(theta), rel=1e-11, abs=1e-8)
        fn, fg = nested.factorize(theta), general.factorize(theta)
        beta_n, b_n, cov_n = nested.solve(fn)
        beta_g, b_g, cov_g = general.solve(fg)
        np.testing.assert_allclose(beta_n, beta_g, rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(cov_n, cov_g, rtol=1e-8, atol=1e-12)
        for mine, theirs in zip(b_n, b_g, strict=True):
            np.testing.assert_allclose(mine, theirs, atol=1e-8)
        s2 = general.sigma2(fg)
        assert nested.sigma2(fn) == pytest.approx(s2, rel=1e-10)
        for mine, theirs in zip(nested.cond_var(fn, s2), general.cond_var(fg, s2), strict=True):
            np.testing.assert_allclose(mine, theirs, atol=1e-9)


def test_crossed_design_takes_the_general_path() -> None:
    frame = _district_data(3)
    frame["teacher"] = np.random.default_rng(0).integers(0, 9, len(frame))
    crossed, _ = _problems(frame, "y ~ x + (1 | student) + (1 | teacher)", True)
    assert type(crossed) is PlsProblem
    # a school's students taught by a teacher of another school: not nested either way
    nested, _ = _problems(frame, "y ~ x + (1 | student) + (1 | school)", True)
    assert isinstance(nested, NestedPls)
    result = fit_lmm(frame, "y ~ x + (1 | student) + (1 | teacher)")
    assert result.converged
    assert result.varcorr()["grp"].tolist() == ["student", "teacher", "Residual"]


def test_nested_fit_is_a_minimum_and_matches_the_general_criterion() -> None:
    frame = _district_data(11)
    formula = "y ~ x + (1 | district) + (1 + x | district:school/student)"
    result = fit_lmm(frame, formula)
    nested, general = _problems(frame, formula, True)
    assert general.objective(result.theta) == pytest.approx(result.criterion, abs=1e-8)
    lower = theta_lower(nested.blocks)
    rng = np.random.default_rng(2)
    for d in [*np.eye(len(result.theta)), *rng.normal(size=(4, len(result.theta)))]:
        for h in (1e-3, 1e-2):
            for sign in (1.0, -1.0):
                cand = result.theta + sign * h * d / np.linalg.norm(d)
                if (cand < lower).any():
                    continue
                assert general.objective(cand) >= result.criterion - 1e-6


def test_growth_curves_plot_per_student_and_per_school(growth: LmmResult, tmp_path: Path) -> None:
    students = growth.growth_curves(time="time", group="student:school", times=[0.0, 2.0, 4.0])
    # the interaction's level label is a column, so the table plots by that group
    assert students.columns[0] == "student:school"
    first = students.iloc[0]
    assert first["student:school"] == f"{int(first['student'])}:{int(first['school'])}"
    png = plot_growth_curves(students, tmp_path / "students.png", time="time", group="student:school")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    schools = growth.growth_curves(time="time", group="school")
    assert "school:student" not in schools.columns
    svg = plot_growth_curves(schools, tmp_path / "schools.svg", time="time", group="school").read_text()
    assert "<svg" in svg
    # empirical-Bayes intervals: a school curve's interval is narrower than its students'
    sc = schools[schools["time"] == 4.0].set_index("school")["se"]
    st = students[students["time"] == 4.0].groupby("school")["se"].median()
    assert (sc.loc[st.index] < st).all()


def test_solvers_give_the_same_fit() -> None:
    frame = _simulate_growth(30, 8, 4, seed=5)
    nested = fit_lmm(frame, GROWTH)
    general = fit_lmm(frame, GROWTH, solver="general")
    assert nested.criterion == pytest.approx(general.criterion, abs=1e-6)
    assert nested.fixef == pytest.approx(general.fixef, abs=1e-4)
    np.testing.assert_allclose(nested.varcorr()["vcov"], general.varcorr()["vcov"], rtol=1e-3, atol=1e-6)
    with pytest.raises(InvalidInput, match="solver must be one of"):
        fit_lmm(frame, GROWTH, solver="cholmod")
    frame["teacher"] = np.arange(len(frame)) % 7
    with pytest.raises(InvalidInput, match="nested in the next coarser"):
        fit_lmm(frame, "score ~ time + (1 | student) + (1 | teacher)", solver="nested")
