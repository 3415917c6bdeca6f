"""lme4 formula syntax: parsing and model matrices with R's term order and column names.

Supported: ``y ~ a + b*c + d:e + (1 + x | g) + (x || g) + (1 | g1/g2) + (1 | g1:g2)``,
``0 +`` / ``- 1`` to drop an intercept, numeric and categorical variables (treatment
contrasts, first level as reference, R's rule for when a factor inside an interaction
is coded by contrasts or by full indicators).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from edsight.errors import InvalidInput

_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")


@dataclass(frozen=True)
class TermSpec:
    """The right-hand side of one model part: terms as tuples of variable names, R-ordered."""

    intercept: bool
    terms: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class RandomSpec:
    """One random-effect term ``(lhs | grouping)``; ``factors`` are the grouping variables."""

    lhs: TermSpec
    factors: tuple[str, ...]

    @property
    def group_name(self) -> str:
        """The name lme4 prints for the grouping factor, e.g. ``student:school``."""
        return ":".join(self.factors)


@dataclass(frozen=True)
class FormulaSpec:
    """A parsed lme4 formula."""

    response: str
    fixed: TermSpec
    random: tuple[RandomSpec, ...]

    def variables(self) -> list[str]:
        """Every data column the formula reads, response first."""
        seen: dict[str, None] = {self.response: None}
        for term in self.fixed.terms:
            seen.update(dict.fromkeys(term))
        for r in self.random:
            for term in r.lhs.terms:
                seen.update(dict.fromkeys(term))
            seen.update(dict.fromkeys(r.factors))
        return list(seen)


def _split_top(text: str, seps: str) -> list[tuple[str, str]]:
    """Split on separator characters outside parentheses; returns (separator before, piece)."""
    out: list[tuple[str, str]] = []
    depth, start, sep = 0, 0, "+"
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise InvalidInput(f"unbalanced parentheses in formula part {text!r}")
        elif depth == 0 and ch in seps:
            out.append((sep, text[start:i].strip()))
            sep, start = ch, i + 1
    if depth != 0:
        raise InvalidInput(f"unbalanced parentheses in formula part {text!r}")
    out.append((sep, text[start:].strip()))
    return out


def _check_name(name: str, formula: str) -> str:
    if not _NAME.match(name):
        raise InvalidInput(f"cannot read {name!r} in formula {formula!r}: expected a column name")
    return name


def _parse_rhs(text: str, formula: str, *, allow_bars: bool) -> tuple[TermSpec, list[str]]:
    """Parse a sum of fixed terms; returns the TermSpec and the raw bar pieces (if allowed)."""
    intercept = True
    raw_terms: list[tuple[str, ...]] = []
    bars: list[str] = []
    for sep, piece in _split_top(text, "+-"):
        if not piece:
            if sep == "-" or raw_terms or bars:
                raise InvalidInput(f"empty term in formula {formula!r}")
            continue
        if piece.startswith("(") and piece.endswith(")") and "|" in piece:
            if not allow_bars or sep == "-":
                raise InvalidInput(f"unexpected random-effect term {piece!r} in formula {formula!r}")
            bars.append(piece[1:-1].strip())
            continue
        if piece in ("0", "1"):
            intercept = (piece == "1") != (sep == "-")
            continue
        if sep == "-":
            raise InvalidInput(f"removing terms other than the intercept is not supported: {formula!r}")
        for factor_group in _expand_star(piece, formula):
            raw_terms.append(factor_group)
    return TermSpec(intercept=intercept, terms=_order_terms(raw_terms)), bars


def _expand_star(piece: str, formula: str) -> list[tuple[str, ...]]:
    """``a*b:c`` -> [(a,), (b, c), (a, b, c)] in R's expansion order."""
    if "(" in piece or ")" in piece:
        raise InvalidInput(f"parenthesised or transformed terms are not supported: {piece!r} in {formula!r}")
    parts = [tuple(_check_name(v.strip(), formula) for v in p.split(":")) for p in piece.split("*")]
    out: list[tuple[str, ...]] = []
    for size in range(1, len(parts) + 1):
        for combo in combinations(parts, size):
            merged: dict[str, None] = {}
            for p in combo:
                merged.update(dict.fromkeys(p))
            out.append(tuple(merged))
    return out


def _order_terms(raw: list[tuple[str, ...]]) -> tuple[tuple[str, ...], ...]:
    """R's terms(): variables indexed by first appearance, labels in variable order, terms by degree."""
    index: dict[str, int] = {}
    for term in raw:
        for v in term:
            index.setdefault(v, len(index))
    unique: dict[frozenset[str], tuple[str, ...]] = {}
    for term in raw:
        key = frozenset(term)
        if key not in unique:
            unique[key] = tuple(sorted(key, key=index.__getitem__))
    ordered = sorted(unique.values(), key=len)  # stable: same degree keeps appearance order
    return tuple(ordered)


def _parse_bar(body: str, formula: str) -> list[RandomSpec]:
    double = "||" in body
    lhs_text, _, grp_text = body.partition("||" if double else "|")
    if "|" in grp_text or not grp_text.strip() or not lhs_text.strip():
        raise InvalidInput(f"cannot read random-effect term ({body}) in formula {formula!r}")
    lhs, _ = _parse_rhs(lhs_text, formula, allow_bars=False)
    groupings: list[tuple[str, ...]] = []
    for _sep, g in _split_top(grp_text.strip(), "+"):
        nest = [tuple(_check_name(v.strip(), formula) for v in part.split(":")) for part in g.split("/")]
        # lme4's expandSlash: a/b -> a + b:a (inner factor named first)
        for depth in range(1, len(nest) + 1):
            names: list[str] = []
            for part in reversed(nest[:depth]):
                names.extend(part)
            groupings.append(tuple(names))
    specs: list[RandomSpec] = []
    for factors in groupings:
        if double:
            # lme4's expandDoubleVerts: one uncorrelated term per column
            if lhs.intercept:
                specs.append(RandomSpec(TermSpec(True, ()), factors))
            for term in lhs.terms:
                specs.append(RandomSpec(TermSpec(False, (term,)), factors))
        else:
            specs.append(RandomSpec(lhs, factors))
    return specs


def parse_formula(formula: str) -> FormulaSpec:
    """Parse an lme4 model formula; raises InvalidInput with the reason when it cannot."""
    if not isinstance(formula, str) or formula.count("~") != 1:
        raise InvalidInput(f"formula must have the form 'y ~ terms': {formula!r}")
    left, right = (s.strip() for s in formula.split("~"))
    response = _check_name(left, formula)
    if not right:
        raise InvalidInput(f"formula has no right-hand side: {formula!r}")
    fixed, bars = _parse_rhs(right, formula, allow_bars=True)
    random: list[RandomSpec] = []
    for body in bars:
        random.extend(_parse_bar(body, formula))
    if not random:
        raise InvalidInput(f"formula has no random-effect term like (1 | group): {formula!r}")
    return FormulaSpec(response=response, fixed=fixed, random=tuple(random))


# ---------------------------------------------------------------- model matrices


@dataclass
class Coding:
    """Levels of every categorical variable, fixed at fit time so new data codes the same way."""

    levels: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_data(
        cls, data: pd.DataFrame, names: list[str], given: Mapping[str, Sequence[str]] | None = None
    ) -> Coding:
        """Levels of the categorical columns among ``names``; ``given`` fixes some orders.

        Without a given order a pandas Categorical keeps its categories, booleans are
        FALSE/TRUE and other text columns take the order of first appearance, so the
        first value in the file is the reference level.
        """
        given = dict(given or {})
        levels: dict[str, list[str]] = {}
        for name in names:
            col = data[name]
            if name in given:
                wanted = [str(v) for v in given[name]]
                present = set(_as_text(col).tolist())
                unknown = sorted(present - set(wanted))
                if unknown:
                    raise InvalidInput(f"column {name!r} has values not in the given levels: {unknown[:5]}")
                levels[name] = wanted
            elif is_categorical(col):
                levels[name] = factor_levels(col, appearance=True)
        return cls(levels)


def is_categorical(col: pd.Series) -> bool:
    """Whether a column is treated as a factor (strings, categories, booleans)."""
    return not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)


def factor_levels(col: pd.Series, *, appearance: bool = False) -> list[str]:
    """Factor levels: category order, FALSE/TRUE, first appearance or sorted unique values."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return [str(c) for c in col.cat.categories]
    if pd.api.types.is_bool_dtype(col):
        return ["FALSE", "TRUE"]
    values = pd.unique(col.dropna())
    if appearance:
        return list(dict.fromkeys(str(v) for v in values))
    try:
        ordered = sorted(values)
    except TypeError:
        ordered = sorted(values, key=str)
    return [str(v) for v in ordered]


def _as_text(col: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(col):
        return np.where(col.to_numpy(dtype=bool), "TRUE", "FALSE")
    return col.astype(str).to_numpy()


def model_matrix(spec: TermSpec, data: pd.DataFrame, coding: Coding) -> tuple[np.ndarray, list[str]]:
    """Dense model matrix and lme4 column names for one TermSpec."""
    n = len(data)
    cols: list[np.ndarray] = []
    names: list[str] = []
    if spec.intercept:
        cols.append(np.ones(n))
        names.append("(Intercept)")
    present: set[frozenset[str]] = set()
    first_factor_done = spec.intercept
    for term in spec.terms:
        pieces: list[tuple[list[np.ndarray], list[str]]] = []
        for var in term:
            if var in coding.levels:
                levels = coding.levels[var]
                margin = frozenset(term) - {var}
                # R codes a factor by contrasts when the term without it is already in the model
                full = (not first_factor_done and len(term) == 1) or (bool(margin) and margin not in present)
                if not first_factor_done:
                    first_factor_done = True
                use = levels if full else levels[1:]
                text = _as_text(data[var])
                pieces.append(([(text == lev).astype(float) for lev in use], [f"{var}{lev}" for lev in use]))
            else:
                pieces.append(([data[var].to_numpy(dtype=float)], [var]))
        # first variable varies fastest, as in R's model.matrix
        term_cols: list[np.ndarray] = [np.ones(n)]
        term_names: list[str] = [""]
        for var_cols, var_names in pieces:
            term_cols = [c * v for v in var_cols for c in term_cols]
            term_names = [f"{t}:{vn}" if t else vn for vn in var_names for t in term_names]
        cols.extend(term_cols)
        names.extend(term_names)
        present.add(frozenset(term))
    matrix = np.column_stack(cols) if cols else np.zeros((n, 0))
    return matrix, names


def group_codes(data: pd.DataFrame, factors: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """Integer codes and level labels of a (possibly interacted) grouping factor, R-sorted."""
    if len(factors) == 1:
        col = data[factors[0]]
        levels = factor_levels(col)
        lookup = {lev: i for i, lev in enumerate(levels)}
        if pd.api.types.is_bool_dtype(col):
            uniq, inverse = np.unique(_as_text(col), return_inverse=True)
            return np.array([lookup[u] for u in uniq], dtype=np.int64)[inverse], levels
        # factorize the raw values and convert only the distinct ones to text (1M rows, 200k ids)
        inverse, distinct = pd.factorize(col)
        codes = np.array([lookup[str(u)] for u in np.asarray(distinct, dtype=object)], dtype=np.int64)[
            inverse
        ]
        return codes, levels
    parts = [group_codes(data, (f,)) for f in factors]
    # only the combinations that occur, first factor slowest (R's `a:b` on factors)
    sizes = [len(levels) for _codes, levels in parts]
    key = np.zeros(len(data), dtype=np.int64)
    for (codes, _levels), size in zip(parts, sizes, strict=True):
        key = key * size + codes
    uniq, inverse = np.unique(key, return_inverse=True)
    digits: list[np.ndarray] = []
    rest = uniq.copy()
    for size in reversed(sizes):
        digits.append(rest % size)
        rest = rest // size
    digits.reverse()
    texts = [np.asarray(levels, dtype=object)[d] for (_c, levels), d in zip(parts, digits, strict=True)]
    joined = pd.Series(texts[0], dtype=object).astype(str)
    for t in texts[1:]:
        joined = joined + ":" + pd.Series(t, dtype=object).astype(str)
    labels: list[str] = joined.tolist()
    return inverse.astype(np.int64), labels
