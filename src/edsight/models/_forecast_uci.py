"""The UCI Student Performance files (Cortez & Silva 2008): loading and the three feature sets."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from edsight.errors import InvalidInput

log = logging.getLogger(__name__)

UCI_TARGET = "G3"
UCI_GRADE_BOUNDS = (0.0, 20.0)
# Column the loader adds: one key per student, the same in the math and Portuguese files.
UCI_STUDENT_KEY = "student_key"

# The 30 attributes known before the school year starts (student.txt, columns 1-30).
UCI_BACKGROUND: tuple[str, ...] = (
    "school", "sex", "age", "address", "famsize", "Pstatus", "Medu", "Fedu", "Mjob", "Fjob",
    "reason", "guardian", "traveltime", "studytime", "failures", "schoolsup", "famsup", "paid",
    "activities", "nursery", "higher", "internet", "romantic", "famrel", "freetime", "goout",
    "Dalc", "Walc", "health", "absences",
)  # fmt: skip
_GRADES = ("G1", "G2", "G3")

# The attributes the dataset's authors used to match students across the two files (student.txt note).
_IDENTITY = (
    "school", "sex", "age", "address", "famsize", "Pstatus", "Medu", "Fedu", "Mjob", "Fjob",
    "reason", "nursery", "internet",
)  # fmt: skip

UCI_FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "with_g1_g2": (*UCI_BACKGROUND, "G1", "G2"),
    "with_g1": (*UCI_BACKGROUND, "G1"),
    "no_prior_grades": UCI_BACKGROUND,
}

MSG_MISSING_COLUMNS = "{path}: missing column(s) {columns}; expected the UCI Student Performance layout"
MSG_BAD_GRADE = "{path}: column {column} row {row}: expected a grade 0-20, got {value!r}"


def load_uci_student_performance(path: str | Path) -> pd.DataFrame:
    """Read student-mat.csv or student-por.csv (``;``-separated) with numeric grades and a student key.

    The key hashes the attributes the dataset's authors used to match students across the two
    courses, so a grouped split keeps a student (and look-alike students) on one side.
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, sep=";")
    except (OSError, pd.errors.ParserError) as exc:
        raise InvalidInput(f"{path}: cannot read as a ';'-separated CSV: {exc}") from exc
    missing = [c for c in (*UCI_BACKGROUND, *_GRADES) if c not in frame.columns]
    if missing:
        raise InvalidInput(MSG_MISSING_COLUMNS.format(path=path, columns=", ".join(missing)))
    for column in _GRADES:
        # G1 and G2 are quoted in the original files, so they arrive as text.
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() | (values < 0) | (values > 20)
        if bad.any():
            row = int(bad.to_numpy().argmax())
            # +2: the header line and 1-based numbering, so the row matches the file.
            raise InvalidInput(
                MSG_BAD_GRADE.format(path=path, column=column, row=row + 2, value=frame[column].iloc[row])
            )
        frame[column] = values.astype("float64")
    # Hash the identity columns as text so the key does not depend on how each file was typed.
    identity = frame.loc[:, list(_IDENTITY)].astype(str)
    frame[UCI_STUDENT_KEY] = pd.util.hash_pandas_object(identity, index=False).map("{:016x}".format)
    log.info("loaded %s: %d rows, %d student keys", path.name, len(frame), frame[UCI_STUDENT_KEY].nunique())
    return frame
