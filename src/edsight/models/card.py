"""Model cards (Mitchell et al. 2019) generated from a saved model's metadata, in Markdown and HTML.

Nothing here is written per model: every model-specific sentence is filled from
``metadata.json`` (:class:`~edsight.models.registry.ModelRecord`), the metrics, the fairness
table and the global importance passed in. The fixed text (intended use, why protected
attributes stay out of the inputs) is the project's policy, the same for every model.

Metadata keys read, first at the top level of the metadata, then under ``extra``, then in
``metrics``: ``target``, ``positive``, ``horizon_weeks`` (or ``horizon`` with ``horizon_unit``),
``feature_table``, ``excluded_protected``, ``include_groups``, ``split``, ``threshold``, ``n``,
``n_positive`` and ``importance`` (records of global_importance, used when none is passed).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edsight.errors import InvalidInput
from edsight.models.registry import ModelRecord

__all__ = ["TARGET_DESCRIPTIONS", "model_card", "model_card_html", "write_model_card"]

Block = tuple[str, Any]

#: What each known target means (the label definitions of edsight.features.labels).
TARGET_DESCRIPTIONS: dict[str, str] = {
    "will_fail_academically": "mean course grade below 60% over the horizon weeks",
    "will_disengage": "mean weekly page views below 10 and participations below 2 over the horizon",
    "will_miss_assignments": "more than 2 missing assignments on average over the horizon",
    "will_dropout": "mean grade below 40% and mean weekly page views below 5 over the horizon",
    "non_graduation": "not graduated by the end of the horizon school year(s)",
    "dropout_1y": "dropped out by the end of the school year",
    "dropout_2y": "dropped out by the end of the next school year",
    "non_graduation_1y": "not graduated by the end of the school year (cohort due)",
    "non_graduation_2y": "not graduated by the end of the next school year (cohort due)",
}

_FAIRNESS_METRICS = ("auc", "fpr", "fnr", "precision", "selection_rate", "calibration_gap")
_CALIBRATION_FLAG = 0.05
_SMALL_GAIN = 0.02

ERR_METADATA = "model card: metadata must be a ModelRecord or a mapping, got {0}"

_WHY_EXCLUDED = (
    "Protected attributes (for example race/ethnicity, gender, disability, economic status, "
    "language status) are EXCLUDED from the model's inputs by default and are used only to audit "
    "the scores by group. Reason: Wisconsin's Dropout Early Warning System (DEWS) fed such "
    "attributes (race, free or reduced-price lunch status and more) to its model. A 2023 "
    "investigation by The Markup and Chalkbeat found its 'high risk' predictions wrong nearly three "
    "quarters of the time, wrong more often for Black and Hispanic students than for white students, "
    "and stigmatising for students who had not been told; Wisconsin withdrew the predictions later "
    "that year. A demographic input makes a "
    "student's group part of their score; edsight keeps it out and measures disparities instead. "
    "Other inputs can still act as proxies for group membership, which is why the audit below "
    "is part of every card."
)


# -- metadata access -------------------------------------------------------------------------------


def _metadata(record_or_metadata: ModelRecord | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(record_or_metadata, ModelRecord):
        meta = dict(record_or_metadata.metadata)
        meta.setdefault("name", record_or_metadata.name)
        meta.setdefault("version", record_or_metadata.version)
        return meta
    if isinstance(record_or_metadata, Mapping):
        return dict(record_or_metadata)
    raise InvalidInput(ERR_METADATA.format(type(record_or_metadata).__name__))


def _lookup(meta: Mapping[str, Any], metrics: Mapping[str, Any], key: str, default: Any = None) -> Any:
    for source in (meta, meta.get("extra") or {}, metrics):
        if isinstance(source, Mapping) and source.get(key) is not None:
            return source[key]
    return default


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(f):
        return "n/a"
    return f"{f:.{digits}f}"


# -- fairness table with suppression ----------------------------------------------------------------


def _fairness_frame(fairness: pd.DataFrame | Mapping[str, Any]) -> pd.DataFrame:
    """Accept fairness_report output or the ``by_group`` dict of cross_validate."""
    if isinstance(fairness, pd.DataFrame):
        return fairness.copy()
    rows = [
        {"attribute": str(attr), "group": str(group), **dict(stats)}
        for attr, groups in fairness.items()
        for group, stats in dict(groups).items()
    ]
    return pd.DataFrame(rows)


def _fairness_rows(
    fairness: pd.DataFrame | Mapping[str, Any], min_n: int
) -> tuple[list[list[str]], list[str]]:
    """Table rows and calibration warnings; suppressed groups carry no figures, not even n.

    A group is suppressed when marked so or when its n is under ``min_n``. Where an attribute
    has a suppressed group, the n of its smallest shown group is hidden too (complementary
    suppression), so the suppressed n cannot be recovered from the total.
    """
    frame = _fairness_frame(fairness).reset_index(drop=True)
    if frame.empty:
        return [], []
    raw_n = frame["n"] if "n" in frame else pd.Series(None, index=frame.index, dtype=object)
    n = pd.to_numeric(raw_n, errors="coerce").to_numpy(dtype=float)
    marked = frame["suppressed"].fillna(False).astype(bool).to_numpy() if "suppressed" in frame else False
    suppressed = np.asarray(marked | np.isnan(n) | (np.nan_to_num(n, nan=0.0) < min_n), dtype=bool)
    hide_n = suppressed.copy()
    attributes = frame["attribute"].astype(str).to_numpy()
    for attribute in dict.fromkeys(attributes):
        shown = np.flatnonzero((attributes == attribute) & ~suppressed)
        if shown.size and (suppressed & (attributes == attribute)).any():
            hide_n[shown[np.argmin(n[shown])]] = True
    gaps = (
        pd.to_numeric(frame["calibration_gap"], errors="coerce").to_numpy(dtype=float)
        if "calibration_gap" in frame
        else np.full(len(frame), np.nan)
    )
    rows: list[list[str]] = []
    warnings: list[str] = []
    for i in range(len(frame)):
        attribute, group = attributes[i], str(frame.at[i, "group"])
        if suppressed[i]:
            rows.append([attribute, group, f"suppressed (n < {min_n})", *["" for _ in _FAIRNESS_METRICS]])
            continue
        shown_n = "suppressed (complementary)" if hide_n[i] else str(int(n[i]))
        figures = [_num(frame.at[i, m]) if m in frame else "n/a" for m in _FAIRNESS_METRICS]
        rows.append([attribute, group, shown_n, *figures])
        if abs(gaps[i]) > _CALIBRATION_FLAG:
            side = "over" if gaps[i] > 0 else "under"
            warnings.append(
                f"Scores {side}-predict the outcome for {attribute} = {group} by {abs(gaps[i]):.3f} "
                f"(more than {_CALIBRATION_FLAG}); read its probabilities with care."
            )
    return rows, warnings


# -- document model ---------------------------------------------------------------------------------


def _blocks(
    meta: dict[str, Any],
    metrics: Mapping[str, Any],
    fairness: pd.DataFrame | Mapping[str, Any] | None,
    importance: pd.DataFrame | None,
    comparison: Mapping[str, Any] | None,
    min_group_n: int,
) -> list[Block]:
    name = str(meta.get("name", "model"))
    version = str(meta.get("version", "?"))
    params = dict(meta.get("params") or {})
    target = _lookup(meta, metrics, "target")
    positive = _lookup(meta, metrics, "positive")
    horizon = _lookup(meta, metrics, "horizon_weeks")
    horizon_text = f"{horizon} weeks" if horizon is not None else _lookup(meta, metrics, "horizon")
    unit = _lookup(meta, metrics, "horizon_unit")
    if horizon is None and horizon_text is not None and unit:
        horizon_text = f"{horizon_text} {str(unit).replace('_', ' ')}"
    window = dict(meta.get("training_window") or {})
    features: list[str] = [str(f) for f in meta.get("features") or metrics.get("features") or []]
    excluded: list[str] = [str(c) for c in _lookup(meta, metrics, "excluded_protected", [])]
    include_groups = bool(_lookup(meta, metrics, "include_groups", False))
    split = dict(_lookup(meta, metrics, "split", {}) or {})
    data_hash = meta.get("data_sha256") or _lookup(meta, metrics, "data_sha256")
    pooled = dict(metrics.get("pooled") or metrics)
    threshold = _lookup(meta, metrics, "threshold", 0.5)
    target_text = (
        f"`{target}`" + (f" = `{positive}`" if positive is not None else "") if target else "not recorded"
    )
    described = TARGET_DESCRIPTIONS.get(str(target), "")

    b: list[Block] = [("h1", f"Model card: {name} (version {version})")]
    b.append(
        (
            "table",
            (
                ["field", "value"],
                [
                    ["learner", str(params.get("learner", "n/a"))],
                    ["calibration", str(params.get("calibration", "n/a"))],
                    ["target", target_text],
                    ["horizon", str(horizon_text or "not recorded")],
                    ["created", str(meta.get("created_at", "n/a"))],
                    ["edsight version", str(meta.get("edsight_version", "n/a"))],
                    ["training data SHA-256", f"`{data_hash}`" if data_hash else "not recorded"],
                ],
            ),
        )
    )

    b.append(("h2", "Intended use"))
    outcome = (
        f"the outcome `{target}`" + (f" ({described})" if described else "") if target else "the outcome"
    )
    b.append(
        (
            "ul",
            [
                f"Early warning: the model flags students for whom {outcome} is likely"
                + (f" within the next {horizon_text}" if horizon_text else "")
                + ", so that staff can look sooner.",
                "Human in the loop: a flag is a prompt for a teacher, counselor or advisor to review the "
                "student's record and talk with them; it never decides anything on its own.",
                "Intended users: school and course staff with legitimate access to the student's record.",
                "A flag describes a situation at one point in time, never a student's identity: do not "
                "call students 'at-risk' and do not store the flag as a label that follows them.",
                "Out of scope: placement, discipline, admission, grading, evaluating teachers or schools, "
                "and populations unlike the training data.",
            ],
        )
    )

    b.append(("h2", "Training data"))
    b.append(
        (
            "ul",
            [
                "Window: "
                + (", ".join(f"{k} {v}" for k, v in sorted(window.items())) if window else "not recorded"),
                f"Data hash (SHA-256 of the training frame): `{data_hash}`"
                if data_hash
                else "Data hash: not recorded",
                f"Source table: `{_lookup(meta, metrics, 'feature_table')}`"
                if _lookup(meta, metrics, "feature_table")
                else "Source table: not recorded",
                f"Rows: {_lookup(meta, metrics, 'n', 'n/a')}, positive outcomes: "
                f"{_lookup(meta, metrics, 'n_positive', 'n/a')}",
            ],
        )
    )

    b.append(("h2", f"Features used ({len(features)})"))
    encoder = dict(meta.get("encoder") or {})
    categorical = set(dict(encoder.get("categorical") or {}))
    b.append(
        (
            "p",
            ", ".join(f"`{f}`" + (" (categorical)" if f in categorical else "") for f in features)
            or "none recorded",
        )
    )

    b.append(("h2", "Protected attributes"))
    if include_groups:
        b.append(
            (
                "p",
                "This model INCLUDES the protected attributes "
                + ", ".join(f"`{c}`" for c in excluded or ["(not recorded)"])
                + " among its inputs, against the default. Review why before any use.",
            )
        )
    else:
        audited = ", ".join(f"`{c}`" for c in excluded) if excluded else "none were named at training"
        b.append(("p", f"Excluded from the inputs and used for the audit only: {audited}."))
    b.append(("p", _WHY_EXCLUDED))

    b.append(("h2", "Target and horizon"))
    b.append(
        (
            "ul",
            [
                f"Target: {target_text}" + (f": {described}" if described else ""),
                f"Horizon: {horizon_text} after the feature week"
                if horizon_text
                else "Horizon: not recorded",
                f"Flag threshold on the calibrated probability: {threshold}",
            ],
        )
    )

    b.append(("h2", "Validation"))
    method = split.get("method", "not recorded")
    items = [f"Method: {method}"]
    if split.get("folds") is not None:
        items.append(f"Folds: {split['folds']} (seed {split.get('seed', 'n/a')})")
    if split.get("group_by"):
        items.append(
            f"Folds grouped by `{split['group_by']}` (the student identifier): all rows of one student "
            "fall in the same fold" + (f" ({split['n_ids']} students)" if split.get("n_ids") else "")
        )
    for key in sorted(
        k for k in split if k not in {"method", "folds", "seed", "group_by", "n_ids", "shuffle"}
    ):
        items.append(f"{key}: {split[key]}")
    if params.get("calibration", "none") != "none":
        items.append(
            f"{params['calibration']} calibration is fitted on inner folds of each training fold, "
            "never on the held-out rows."
        )
    b.append(("ul", items))

    b.append(("h2", "Performance"))
    auc_sd = metrics.get("auc_sd")
    perf = [
        [
            "AUC",
            _num(metrics.get("auc")) + (f" (sd {_num(auc_sd)} over folds)" if auc_sd is not None else ""),
        ],
        ["PR-AUC", _num(metrics.get("pr_auc"))],
        ["Brier score", _num(metrics.get("brier"))],
        [
            "Expected calibration error",
            _num(metrics.get("calibration_error", pooled.get("calibration_error"))),
        ],
        ["Prevalence", _num(pooled.get("prevalence"))],
    ]
    at_k = [k for k in pooled if k.startswith("precision_at_")]
    for key in sorted(at_k, key=lambda k: float(k.removeprefix("precision_at_").removesuffix("pct"))):
        suffix = key.removeprefix("precision_at_")
        perf.append(
            [
                f"precision / recall, top {suffix.replace('pct', '%')}",
                f"{_num(pooled[key])} / {_num(pooled.get('recall_at_' + suffix))}",
            ]
        )
    for key in ("fpr", "fnr", "precision", "recall", "selection_rate"):
        if key in pooled:
            perf.append([f"{key} at threshold {threshold}", _num(pooled[key])])
    b.append(("table", (["metric", "value"], perf)))
    reliability = list(metrics.get("reliability") or [])
    if reliability:
        b.append(("h3", "Calibration (reliability by predicted-probability bin)"))
        b.append(
            (
                "table",
                (
                    ["bin", "n", "mean predicted", "observed rate"],
                    [
                        [
                            f"{_num(r.get('lower'), 1)}-{_num(r.get('upper'), 1)}",
                            str(r.get("n")),
                            _num(r.get("mean_predicted")),
                            _num(r.get("observed_rate")),
                        ]
                        for r in reliability
                    ],
                ),
            )
        )

    caveats: list[str] = []
    if comparison:
        b.append(("h2", f"Gain over the baseline: {comparison.get('name', 'baseline')}"))
        rows = []
        for key in ("auc", "pr_auc", "brier", "calibration_error"):
            if comparison.get(key) is None or metrics.get(key) is None:
                continue
            gain = float(metrics[key]) - float(comparison[key])
            rows.append([key, _num(metrics[key]), _num(comparison[key]), f"{gain:+.3f}"])
        b.append(("table", (["metric", "model", "baseline", "difference"], rows)))
        if comparison.get("auc") is not None and metrics.get("auc") is not None:
            gain = float(metrics["auc"]) - float(comparison["auc"])
            if gain < _SMALL_GAIN:
                caveats.append(
                    f"The model's AUC exceeds the baseline ({comparison.get('name', 'baseline')}) by only "
                    f"{gain:+.3f}: the simpler baseline may serve as well."
                )

    b.append(("h2", "Fairness audit by group"))
    if (
        fairness is None
        or (isinstance(fairness, pd.DataFrame) and fairness.empty)
        or (isinstance(fairness, Mapping) and not fairness)
    ):
        b.append(("p", "No fairness audit was supplied: the model must not be used before one is run."))
    else:
        rows, warnings = _fairness_rows(fairness, min_group_n)
        b.append(
            (
                "p",
                f"Metrics at threshold {threshold}. Groups with fewer than {min_group_n} students "
                "are suppressed and show no figures.",
            )
        )
        b.append(("table", (["attribute", "group", "n", *_FAIRNESS_METRICS], rows)))
        caveats.extend(warnings)
        if any(r[2].startswith("suppressed (n") for r in rows):
            caveats.append(
                "Suppressed groups are too small to audit: the model's behaviour for them is unknown."
            )

    if importance is None and _lookup(meta, metrics, "importance"):
        importance = pd.DataFrame(list(_lookup(meta, metrics, "importance")))
    if importance is not None and not importance.empty:
        top = importance.head(10)
        b.append(("h2", "Top features (mean |SHAP value|, log-odds)"))
        b.append(
            (
                "table",
                (
                    ["rank", "feature", "mean abs SHAP", "share"],
                    [
                        [
                            str(int(r["rank"])) if "rank" in top else str(i + 1),
                            f"`{r['feature']}`",
                            _num(r["mean_abs_shap"]),
                            _num(r.get("share"), 2),
                        ]
                        for i, (_, r) in enumerate(top.iterrows())
                    ],
                ),
            )
        )

    b.append(("h2", "Caveats and limitations"))
    trained_to = window.get("to") or window.get("end") or window.get("as_of")
    caveats.extend(
        [
            "Scores reflect associations in past data, not causes: a reason code says what moved the "
            "score, not what will help the student.",
            "Labels come from recorded outcomes, which carry past practice (grading, attendance "
            "recording, discipline) and its biases.",
            "Reason codes explain the uncalibrated log-odds with SHAP; the calibrated probability "
            "moves in the same direction.",
            "Performance was measured "
            + (f"on data up to {trained_to}" if trained_to else "on the training window")
            + "; it drifts as courses, schools and recording change, so retrain and re-audit regularly.",
        ]
    )
    b.append(("ul", caveats))
    return b


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _render_markdown(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for kind, body in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + body)
        elif kind == "p":
            out.append(body)
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in body))
        elif kind == "table":
            header, rows = body
            lines = ["| " + " | ".join(map(_md_cell, header)) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(_md_cell(str(c)) for c in row) + " |" for row in rows]
            out.append("\n".join(lines))
        out.append("")
    return "\n".join(out)


def _inline_html(text: str) -> str:
    """Escape, then turn Markdown `code` spans into <code>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _render_html(blocks: Sequence[Block]) -> str:
    title = next((body for kind, body in blocks if kind == "h1"), "Model card")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}"
        "</style></head><body>",
    ]
    for kind, body in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{_inline_html(body)}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_inline_html(body)}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in body) + "</ul>")
        elif kind == "table":
            header, rows = body
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in header)
            cells = "".join(
                "<tr>" + "".join(f"<td>{_inline_html(str(c))}</td>" for c in r) + "</tr>" for r in rows
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def model_card(
    record_or_metadata: ModelRecord | Mapping[str, Any],
    *,
    metrics: Mapping[str, Any] | None = None,
    fairness: pd.DataFrame | Mapping[str, Any] | None = None,
    importance: pd.DataFrame | None = None,
    comparison: Mapping[str, Any] | None = None,
    min_group_n: int = 10,
) -> str:
    """The model card as Markdown.

    ``metrics``: a :func:`~edsight.models.risk.cross_validate` result or a
    :func:`~edsight.models.evaluate.binary_metrics` dict (default: the metadata's ``metrics``).
    ``fairness``: :func:`~edsight.models.fairness.fairness_report` output or a ``by_group`` dict.
    ``importance``: :func:`~edsight.models.explain.global_importance` output. ``comparison``:
    ``{"name": "school-level rate", "auc": ..., "pr_auc": ..., "brier": ...}`` of a baseline.
    """
    meta = _metadata(record_or_metadata)
    return _render_markdown(
        _blocks(
            meta, dict(metrics or meta.get("metrics") or {}), fairness, importance, comparison, min_group_n
        )
    )


def model_card_html(
    record_or_metadata: ModelRecord | Mapping[str, Any],
    *,
    metrics: Mapping[str, Any] | None = None,
    fairness: pd.DataFrame | Mapping[str, Any] | None = None,
    importance: pd.DataFrame | None = None,
    comparison: Mapping[str, Any] | None = None,
    min_group_n: int = 10,
) -> str:
    """The same card as a standalone HTML page (all text escaped)."""
    meta = _metadata(record_or_metadata)
    return _render_html(
        _blocks(
            meta, dict(metrics or meta.get("metrics") or {}), fairness, importance, comparison, min_group_n
        )
    )


def write_model_card(
    record: ModelRecord,
    *,
    metrics: Mapping[str, Any] | None = None,
    fairness: pd.DataFrame | Mapping[str, Any] | None = None,
    importance: pd.DataFrame | None = None,
    comparison: Mapping[str, Any] | None = None,
    min_group_n: int = 10,
) -> tuple[Path, Path]:
    """Write ``MODEL_CARD.md`` and ``model_card.html`` next to the saved model; returns both paths."""
    kwargs: dict[str, Any] = {
        "metrics": metrics,
        "fairness": fairness,
        "importance": importance,
        "comparison": comparison,
        "min_group_n": min_group_n,
    }
    md = record.path / "MODEL_CARD.md"
    page = record.path / "model_card.html"
    md.write_text(model_card(record, **kwargs), encoding="utf-8")
    page.write_text(model_card_html(record, **kwargs), encoding="utf-8")
    return md, page
