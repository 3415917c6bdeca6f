"""Small-cell suppression (GOVERNANCE.md rows 9, 10 and 11)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edsight.errors import InvalidInput
from edsight.governance.suppression import suppress_table

MIN_N = 10
counts = st.integers(0, 40) | st.integers(0, 12)


def check_group(out: pd.DataFrame, raw: pd.Series, members: pd.Index) -> None:
    """Margins reveal nothing: total - visible is 0 or >= min_n; never one hidden cell alone."""
    hidden = out.loc[members, "suppressed"]
    total = int(raw[members].sum())
    hidden_sum = int(raw[members][hidden].sum())
    if total == 0:
        return  # every cell is 0, which may be published; hiding one as a complement reveals nothing
    if total < MIN_N and hidden.any():
        assert hidden.all(), "a group below min_n hides every cell (its total is not publishable)"
        return
    assert hidden_sum == 0 or hidden_sum >= MIN_N
    if len(members) > 1:
        assert int(hidden.sum()) != 1


def check_primary(out: pd.DataFrame, raw: pd.Series) -> None:
    shown = out["n"].dropna().astype(int)
    assert not ((shown > 0) & (shown < MIN_N)).any()
    small = (raw > 0) & (raw < MIN_N)
    assert out.loc[small, "suppressed"].all()
    # What is shown is the true count.
    assert (shown == raw[shown.index]).all()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(counts, min_size=1, max_size=6), min_size=1, max_size=6))
def test_one_way_groups(groups: list[list[int]]) -> None:
    rows = [(f"g{i}", f"c{j}", n) for i, cells in enumerate(groups) for j, n in enumerate(cells)]
    frame = pd.DataFrame(rows, columns=["school", "subgroup", "n"])
    frame["mean_score"] = frame["n"] * 1.5
    frame["rate"] = np.where(frame["n"] > 0, 0.5, np.nan)
    out = suppress_table(frame, min_n=MIN_N, by=["school"], value_cols=["mean_score"], rate_cols=["rate"])
    check_primary(out, frame["n"])
    for _, members in frame.groupby("school").groups.items():
        check_group(out, frame["n"], members)
    hidden = out["suppressed"]
    assert out.loc[hidden, "mean_score"].isna().all()
    assert out.loc[hidden, "rate"].isna().all()
    assert (out.loc[~hidden, "mean_score"] == frame.loc[~hidden, "mean_score"]).all()


@settings(max_examples=100, deadline=None)
@given(
    st.integers(2, 5).flatmap(
        lambda c: st.lists(st.lists(counts, min_size=c, max_size=c), min_size=2, max_size=5)
    )
)
def test_two_way_margins(table: list[list[int]]) -> None:
    rows = [(f"r{i}", f"c{j}", n) for i, cells in enumerate(table) for j, n in enumerate(cells)]
    frame = pd.DataFrame(rows, columns=["school", "subgroup", "n"])
    out = suppress_table(frame, min_n=MIN_N, margins=[["school"], ["subgroup"]])
    check_primary(out, frame["n"])
    for col in ("school", "subgroup"):
        for _, members in frame.groupby(col).groups.items():
            check_group(out, frame["n"], members)


def test_example_from_the_docs() -> None:
    frame = pd.DataFrame(
        {
            "school": ["Elm"] * 4,
            "subgroup": ["asian", "black", "hispanic", "white"],
            "n": [4, 25, 31, 60],
            "chronic_absence_rate": [0.25, 0.12, 0.03, 0.97],
        }
    )
    out = suppress_table(frame, by="school", rate_cols=["chronic_absence_rate"])
    assert list(out["suppressed"]) == [True, True, False, False]  # 4 hidden; 25 hides with it
    assert out["n"].isna().tolist() == [True, True, False, False]
    assert out["chronic_absence_rate"].tolist()[2:] == ["<5%", ">95%"]
    big = suppress_table(
        frame.assign(n=[400, 500, 600, 700]), by="school", rate_cols=["chronic_absence_rate"]
    )
    assert big["chronic_absence_rate"].tolist() == [0.25, 0.12, 0.03, 0.97]  # large groups keep exact rates


def test_zero_cells_stay_visible_and_bad_input_is_named() -> None:
    out = suppress_table(pd.DataFrame({"n": [0, 50, 70]}))
    assert not out["suppressed"].any()
    assert out["n"].tolist() == [0, 50, 70]
    with pytest.raises(InvalidInput, match="no column"):
        suppress_table(pd.DataFrame({"n": [1]}), by="school")
    with pytest.raises(InvalidInput, match="non-negative"):
        suppress_table(pd.DataFrame({"n": [-1]}))
