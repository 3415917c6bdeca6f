"""Throughput of the MAP, state test and Canvas Data 2 connectors on generated files.

python benchmarks/ingest_assessments.py [N_STUDENTS]   # default 20,000
"""

import csv
import json
import sys
import tempfile
import time
from pathlib import Path

from edsight.config import Settings
from edsight.ingest.assessments import ingest_map, ingest_state_tests
from edsight.ingest.canvas_data2 import ingest_canvas_data2
from edsight.ingest.ids import edsight_id
from edsight.store.warehouse import Warehouse

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
root = Path(tempfile.mkdtemp())
wh = Warehouse(Settings(home=root / "home"))
wh.init()


def table(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


# Roster and one Canvas course per 100 students (as the SIS and the Canvas API connector would store them).
courses = range(1, N // 100 + 2)
table(
    root / "seed/person.csv",
    ["person_id", "role", "local_id", "state_id", "directory_opt_out"],
    [[f"p{i}", "student", str(100000 + i), f"WI{i}", "false"] for i in range(N)],
)
table(root / "seed/organization.csv", ["org_id", "name", "org_type"], [["u", "U", "institution"]])
table(
    root / "seed/term.csv",
    ["term_id", "name", "term_type", "school_year", "start_date", "end_date"],
    [["t", "T", "term", 2023, "2024-01-08", "2024-05-10"]],
)
table(
    root / "seed/course.csv",
    ["course_id", "title"],
    [[edsight_id("canvas", "course", c), "C"] for c in courses],
)
table(
    root / "seed/section.csv",
    ["section_id", "course_id", "term_id", "school_id"],
    [[edsight_id("canvas", "section", c), edsight_id("canvas", "course", c), "t", "u"] for c in courses],
)
wh.load_directory(root / "seed")

head = [
    "TermName",
    "SchoolName",
    "StudentID",
    "Student_StateID",
    "Subject",
    "Course",
    "GrowthMeasureYN",
    "TestStartDate",
    "TestStartTime",
    "TestRITScore",
    "TestStandardError",
    "TestPercentile",
    "AchievementQuintile",
    "FallToSpringProjectedGrowth",
    "FallToSpringObservedGrowth",
    "LexileScore",
]
subjects = [
    ("Mathematics", "Math K-12"),
    ("Language Arts", "Reading"),
    ("Language Arts", "Language Usage"),
    ("Science", "Science K-12"),
]
table(
    root / "map/AssessmentResults.csv",
    head,
    [
        [
            "Fall 2023-2024",
            "S",
            str(100000 + i),
            f"WI{i}",
            s,
            c,
            "TRUE",
            "09/12/2023",
            "08:00:00",
            200 + i % 40,
            "3.2",
            50,
            "Avg",
            8,
            6,
            "610L",
        ]
        for i in range(N)
        for s, c in subjects
    ],
)
table(
    root / "state/forward_2019.csv",
    [
        "TestYear",
        "WISEID",
        "Grade",
        "Scale_Score_ELA",
        "SEM_ELA",
        "ELA_Performance_Level",
        "Scale_Score_Math",
        "SEM_Math",
        "Math_Performance_Level",
    ],
    [[2019, f"WI{i}", 4, 2500 + i % 90, 20, "Basic", 2450, 19, "Proficient"] for i in range(N)],
)
(root / "wi.yaml").write_text(Path("tests/data/state_tests/wi_forward.yaml").read_text())


def jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


meta = {"action": "U", "ts": "2024-02-20T00:00:00Z"}
jsonl(
    root / "cd2/enrollments/part-0.json",
    [
        {
            "key": {"id": i},
            "value": {
                "user_id": i,
                "course_id": 1 + i // 100,
                "type": "StudentEnrollment",
                "workflow_state": "active",
                "created_at": "2024-01-05T00:00:00Z",
            },
            "meta": meta,
        }
        for i in range(N)
    ],
)
jsonl(
    root / "cd2/assignments/part-0.json",
    [
        {
            "key": {"id": a},
            "value": {
                "context_id": c,
                "title": "A",
                "points_possible": 10,
                "due_at": "2024-02-05T23:59:00Z",
                "workflow_state": "published",
            },
            "meta": meta,
        }
        for c in courses
        for a in range(c * 10, c * 10 + 10)
    ],
)
jsonl(
    root / "cd2/submissions/part-0.json",
    [
        {
            "key": {"id": i * 10 + k},
            "value": {
                "assignment_id": (1 + i // 100) * 10 + k,
                "user_id": i,
                "submitted_at": "2024-02-05T20:00:00Z",
                "cached_due_date": "2024-02-05T23:59:00Z",
                "score": 8.5,
                "workflow_state": "graded",
                "attempt": 1,
            },
            "meta": meta,
        }
        for i in range(N)
        for k in range(10)
    ],
)
jsonl(
    root / "cd2/web_logs/part-0.json",
    [
        {
            "key": {"id": f"00000000-0000-0000-0000-{j:012d}"},
            "value": {
                "timestamp": f"2024-02-{1 + j % 28:02d}T{j % 24:02d}:{j % 60:02d}:00Z",
                "user_id": j % N,
                "course_id": 1 + (j % N) // 100,
                "http_method": "GET" if j % 5 else "POST",
                "url": "/courses/x",
            },
            "meta": meta,
        }
        for j in range(N * 25)
    ],
)

for name, run in [
    ("map", lambda: ingest_map(wh, root / "map")),
    ("state_tests", lambda: ingest_state_tests(wh, root / "state", mapping=root / "wi.yaml")),
    ("canvas_data2", lambda: ingest_canvas_data2(wh, root / "cd2")),
]:
    t = time.perf_counter()
    r = run()
    s = time.perf_counter() - t
    print(
        f"{name:<13} read {r.rows_read:>9,}  stored {r.rows_stored:>9,}  "
        f"quarantined {r.rows_quarantined:>6,}  "
        f"{s:6.2f} s  {r.rows_read / s:>9,.0f} rows/s"
    )
