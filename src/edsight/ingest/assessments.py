"""Assessment files: NWEA MAP Growth exports and state test student files.

Both land in ``assessment_result`` (one row per student, assessment, subject and
test date). Students are never created from assessment files: they are matched
to the roster already in the warehouse (the SIS is the roster authority), and
rows of students not found there are quarantined with the reason, to load once
the roster has them. See docs/ingest-assessments.md.

* :func:`ingest_map`: a MAP Growth export folder, or one AssessmentResults.csv
  or ComboStudentAssessment.csv (assessment ``nwea_map``).
* :func:`ingest_state_tests`: wide yearly state files through a YAML mapping
  (:class:`StateTestMapping`, assessment ``state_test``);
  :func:`state_test_long_form` gives the long form, with performance-level
  labels and proficiency, without a warehouse.
"""

from __future__ import annotations

from edsight.ingest._assessments_map import MAP_TABLES, SUBJECTS, ingest_map, map_to_canonical
from edsight.ingest._assessments_mapping import (
    ColumnMap,
    StateTestMapping,
    StudentSpec,
    SubjectSpec,
    TestDateSpec,
    YearSpec,
    load_state_test_mapping,
)
from edsight.ingest._assessments_state import ingest_state_tests, source_table, state_test_long_form

__all__ = [
    "MAP_TABLES",
    "SUBJECTS",
    "ColumnMap",
    "StateTestMapping",
    "StudentSpec",
    "SubjectSpec",
    "TestDateSpec",
    "YearSpec",
    "ingest_map",
    "ingest_state_tests",
    "load_state_test_mapping",
    "map_to_canonical",
    "source_table",
    "state_test_long_form",
]
