"""Plain-language summaries, written locally from the reason codes and statistics.

Every summary is a template filled with figures edsight computed; nothing leaves the machine.
A district may switch on an OpenAI-compatible endpoint of its own choosing
(:class:`LanguageModelConfig`, off by default) to smooth the wording: only the templated
text is sent, after :func:`redact` has replaced every name and identifier it was given by a
placeholder, and the placeholders are put back in the reply locally.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr

from edsight.errors import InvalidInput, SourceError

__all__ = [
    "LanguageModelConfig",
    "district_narrative",
    "polish",
    "redact",
    "school_narrative",
    "student_narrative",
]

_TARGET_TEXT = {
    "will_fail_academically": "failing the course",
    "will_disengage": "disengaging",
    "will_miss_assignments": "missing assignments",
    "will_dropout": "dropping the course",
    "dropout_1y": "dropping out within a year",
    "dropout_2y": "dropping out within two years",
    "non_graduation_1y": "not graduating within a year",
    "non_graduation_2y": "not graduating within two years",
}


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def _band(p: float) -> str:
    return "high" if p >= 0.5 else "elevated" if p >= 0.25 else "low"


def student_narrative(
    name: str,
    risks: Mapping[str, float],
    reasons: Sequence[Mapping[str, Any]],
    *,
    recommendations: Sequence[Mapping[str, Any]] = (),
    horizon_weeks: int = 4,
) -> str:
    """A short paragraph for staff: the highest risk, its reasons, and what might help."""
    if not risks:
        return f"{name} has no current risk scores."
    target, p = max(risks.items(), key=lambda kv: kv[1])
    what = _TARGET_TEXT.get(target, target.replace("_", " "))
    horizon = f"over the next {horizon_weeks} weeks" if target.startswith("will_") else ""
    lines = [f"{name}'s estimated chance of {what} {horizon} is {_pct(p)} ({_band(p)}).".replace("  ", " ")]
    texts = [str(r["text"]) for r in reasons if r.get("text")]
    if texts:
        lines.append("The main signals: " + "; ".join(texts[:3]) + ".")
    if recommendations:
        names = [str(r["name"]).lower() for r in recommendations[:2]]
        lines.append("Supports that address these: " + " or ".join(names) + ".")
    lines.append("This is an estimate to start a conversation, not a judgement about the student.")
    return " ".join(lines)


def school_narrative(
    school: str,
    *,
    students: int,
    flagged: int | None,
    chronic_absence_rate: float | None = None,
    change_in_flagged: int | None = None,
    largest_gap: Mapping[str, Any] | None = None,
) -> str:
    """A paragraph for a principal; ``flagged`` is None when suppressed (small cells)."""
    lines = [f"{school} has {students:,} students in the current data."]
    if flagged is None:
        lines.append("The number of flagged students is too small to report.")
    else:
        trend = ""
        if change_in_flagged:
            trend = f" ({'up' if change_in_flagged > 0 else 'down'} {abs(change_in_flagged)} from last week)"
        lines.append(f"{flagged:,} ({_pct(flagged / students if students else 0)}) are flagged{trend}.")
    if chronic_absence_rate is not None:
        lines.append(f"{_pct(chronic_absence_rate)} are chronically absent so far this year.")
    if largest_gap:
        lines.append(
            f"The largest achievement gap is in {largest_gap['subject']}: {largest_gap['focal']} vs "
            f"{largest_gap['reference']}, {abs(float(largest_gap['effect_size'])):.2f} standard deviations."
        )
    return " ".join(lines)


def district_narrative(district: str, schools: Sequence[Mapping[str, Any]]) -> str:
    """A paragraph for the district: size, flagged share, and the schools that stand out."""
    total = sum(int(s["students"]) for s in schools)
    known = [s for s in schools if s.get("flagged") is not None]
    flagged = sum(int(s["flagged"]) for s in known)
    lines = [f"{district}: {len(schools)} schools, {total:,} students."]
    if known:
        lines.append(f"{flagged:,} students are flagged in the schools large enough to report.")
        worst = max(known, key=lambda s: int(s["flagged"]) / max(int(s["students"]), 1))
        share = int(worst["flagged"]) / max(int(worst["students"]), 1)
        lines.append(f"The highest flagged share is at {worst['name']} ({_pct(share)}).")
    return " ".join(lines)


class LanguageModelConfig(BaseModel):
    """An OpenAI-compatible chat endpoint the district runs or contracts; off unless configured."""

    model_config = ConfigDict(extra="forbid")

    base_url: str
    model: str
    api_key: SecretStr | None = None
    timeout_s: float = 20.0


def redact(text: str, identifiers: Sequence[str]) -> tuple[str, dict[str, str]]:
    """Replace each identifier (names, ids) by ``[P1]``, ``[P2]``...; returns text and the key."""
    key: dict[str, str] = {}
    for i, ident in enumerate(sorted({s for s in identifiers if s}, key=len, reverse=True), start=1):
        token = f"[P{i}]"
        pattern = re.compile(re.escape(ident), re.IGNORECASE)
        if pattern.search(text):
            text = pattern.sub(token, text)
            key[token] = ident
    return text, key


def polish(text: str, identifiers: Sequence[str], config: LanguageModelConfig | None) -> str:
    """Smooth the wording through the configured endpoint; without one, return ``text`` as is."""
    if config is None:
        return text
    safe, key = redact(text, identifiers)
    headers = {"Authorization": f"Bearer {config.api_key.get_secret_value()}"} if config.api_key else {}
    body = {
        "model": config.model,
        "messages": [
            {
                "role": "system",
                "content": "Rewrite for a teacher in plain, kind language. Keep every number and "
                "every bracketed placeholder such as [P1] exactly. Add nothing.",
            },
            {"role": "user", "content": safe},
        ],
        "temperature": 0,
    }
    try:
        response = httpx.post(
            config.base_url.rstrip("/") + "/chat/completions",
            json=body,
            headers=headers,
            timeout=config.timeout_s,
        )
        response.raise_for_status()
        reply = str(response.json()["choices"][0]["message"]["content"])
    except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
        raise SourceError(f"the language-model endpoint failed: {type(exc).__name__}") from exc
    for token in key:
        if token not in reply:
            raise InvalidInput("the language-model reply dropped a placeholder; keeping the local text")
    for token, ident in key.items():
        reply = reply.replace(token, ident)
    return reply
