"""Versioned model registry under ``EDSIGHT_HOME/models/<name>/<version>/``, pickle-free.

Each version holds ``metadata.json`` (training window, features, metrics, data hash,
created_at, edsight version, the encoder and calibrator state, and SHA-256 of every
artifact) plus the model itself: ``model.txt`` (LightGBM's own text format) or
``coefficients.json`` (logistic regression). Loading parses text and JSON only and
refuses any artifact whose checksum does not match. The checksums catch corruption and
casual edits; they are not a signature against someone who can rewrite metadata.json.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edsight import __version__
from edsight.errors import InvalidInput
from edsight.models._risk_encode import FeatureEncoder
from edsight.models._risk_model import RiskModel

log = logging.getLogger(__name__)

__all__ = ["ModelRecord", "data_hash", "list_models", "load_model", "save_model"]

FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
LIGHTGBM_FILE = "model.txt"
COEFFICIENTS_FILE = "coefficients.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

ERR_NAME = "model name must be 1-64 letters, digits, '.', '_' or '-' (got {0!r})"
ERR_NOT_FITTED = "only a fitted RiskModel can be saved"
ERR_NO_MODEL = "no saved model {0!r} under {1}"
ERR_NO_VERSION = "model {0!r} has no version {1!r} (versions: {2})"
ERR_MISSING_FILE = "model {0!r} version {1}: file {2} is missing"
ERR_TAMPERED = "model {0!r} version {1}: {2} does not match its recorded checksum (modified or corrupt)"
ERR_METADATA = "model {0!r} version {1}: metadata.json is unreadable ({2})"


@dataclass(frozen=True)
class ModelRecord:
    """Where a saved version lives and what it says about itself."""

    name: str
    version: str
    path: Path
    metadata: dict[str, Any]


def data_hash(frame: pd.DataFrame) -> str:
    """SHA-256 over the frame's column names and row hashes (order-sensitive)."""
    h = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _models_dir(home: Path | str) -> Path:
    return Path(home) / "models"


def _versions(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted((p.name for p in directory.iterdir() if p.is_dir() and p.name.isdigit()), key=int)


def save_model(
    model: RiskModel,
    *,
    name: str,
    home: Path | str,
    metrics: dict[str, Any] | None = None,
    training_window: dict[str, str] | None = None,
    data_sha256: str | None = None,
    extra: dict[str, Any] | None = None,
) -> ModelRecord:
    """Save ``model`` as the next version of ``name`` (versions are 1, 2, 3, ...)."""
    if not _NAME.match(name):
        raise InvalidInput(ERR_NAME.format(name))
    if not hasattr(model, "state_"):
        raise InvalidInput(ERR_NOT_FITTED)
    base = _models_dir(home) / name
    existing = _versions(base)
    version = str(int(existing[-1]) + 1 if existing else 1)
    target = base / version
    target.mkdir(parents=True, exist_ok=False)
    state = model.state_
    if "booster" in state:
        artifact = target / LIGHTGBM_FILE
        artifact.write_text(state["booster"].model_to_string(), encoding="utf-8")
    else:
        artifact = target / COEFFICIENTS_FILE
        names = state["encoder"].feature_names_out_
        payload = {
            "intercept": state["intercept"],
            "coef": dict(zip(names, map(float, state["coef"]), strict=True)),
        }
        artifact.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    metadata: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "edsight_version": __version__,
        "params": model.params(),
        "features": model.feature_names_in_,
        "encoder": state["encoder"].to_dict(),
        "calibrator": model.calibrator_,
        "metrics": metrics or {},
        "training_window": training_window or {},
        "data_sha256": data_sha256,
        "artifacts": {artifact.name: _sha256(artifact)},
        **({"extra": extra} if extra else {}),
    }
    (target / METADATA_FILE).write_text(
        json.dumps(metadata, indent=2, default=_json_default), encoding="utf-8"
    )
    log.info("saved model %s version %s", name, version)
    return ModelRecord(name=name, version=version, path=target, metadata=metadata)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def list_models(home: Path | str) -> pd.DataFrame:
    """Saved models: ``name, version, created_at, learner, auc`` (one row per version)."""
    rows: list[dict[str, Any]] = []
    root = _models_dir(home)
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        for version in _versions(model_dir):
            meta_path = model_dir / version / METADATA_FILE
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                meta = {}
            rows.append(
                {
                    "name": model_dir.name,
                    "version": version,
                    "created_at": meta.get("created_at"),
                    "learner": meta.get("params", {}).get("learner"),
                    "auc": meta.get("metrics", {}).get("auc"),
                }
            )
    return pd.DataFrame(rows, columns=["name", "version", "created_at", "learner", "auc"])


def load_model(
    name: str, *, home: Path | str, version: str | int | None = None
) -> tuple[RiskModel, ModelRecord]:
    """Load a saved version (latest by default); returns ``(RiskModel, ModelRecord)``.

    Raises :class:`InvalidInput` naming the file when anything is missing or altered.
    """
    if not _NAME.match(name):
        raise InvalidInput(ERR_NAME.format(name))
    base = _models_dir(home) / name
    versions = _versions(base)
    if not versions:
        raise InvalidInput(ERR_NO_MODEL.format(name, _models_dir(home)))
    chosen = versions[-1] if version is None else str(version)
    if chosen not in versions:
        raise InvalidInput(ERR_NO_VERSION.format(name, chosen, ", ".join(versions)))
    directory = base / chosen
    meta_path = directory / METADATA_FILE
    if not meta_path.is_file():
        raise InvalidInput(ERR_MISSING_FILE.format(name, chosen, meta_path))
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        artifacts: dict[str, str] = dict(meta["artifacts"])
        params = dict(meta["params"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(ERR_METADATA.format(name, chosen, exc)) from exc
    for filename, digest in artifacts.items():
        path = directory / filename
        if not path.is_file():
            raise InvalidInput(ERR_MISSING_FILE.format(name, chosen, path))
        if _sha256(path) != digest:
            raise InvalidInput(ERR_TAMPERED.format(name, chosen, path))
    encoder = FeatureEncoder.from_dict(meta["encoder"])
    model = RiskModel(**params)
    if LIGHTGBM_FILE in artifacts:
        import lightgbm as lgb

        booster = lgb.Booster(model_str=(directory / LIGHTGBM_FILE).read_text(encoding="utf-8"))
        model.state_ = {"encoder": encoder, "booster": booster}
    else:
        coef = json.loads((directory / COEFFICIENTS_FILE).read_text(encoding="utf-8"))
        weights = np.array([coef["coef"][n] for n in encoder.feature_names_out_], dtype=float)
        model.state_ = {"encoder": encoder, "coef": weights, "intercept": float(coef["intercept"])}
    model.calibrator_ = dict(meta["calibrator"])
    model.feature_names_in_ = list(meta["features"])
    model.classes_ = np.array([0, 1])
    record = ModelRecord(name=name, version=chosen, path=directory, metadata=meta)
    return model, record
