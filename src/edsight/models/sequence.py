"""GRU risk model over each student-section's weekly feature history (needs ``edsight[sequence]``).

:class:`SequenceRiskModel` reads the rows of ``weekly_features_lms`` of one student in one
section in week order and scores every week; the score of week ``w`` depends on weeks
``1..w`` only (a one-way GRU, padding only after the last week, scaler and calibrator fitted
at training time). It follows the scikit-learn contract of
:class:`~edsight.models.risk.RiskModel`: parameters stored by ``__init__``, validated by
:meth:`~SequenceRiskModel.fit`, fitted attributes end in ``_``, ``predict_proba`` returns
``(n, 2)``. Probabilities are calibrated (isotonic or Platt) on students held out from
training, who also decide when training stops. :func:`save_sequence_model` writes weights as
a tensor-only ``torch.save`` file (read back with ``weights_only=True``) and everything else
as JSON. See ``docs/sequence.md``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold

from edsight import __version__
from edsight.errors import EdsightError, InvalidInput
from edsight.models._risk_model import RiskModel, _logit
from edsight.models._sequence_data import (
    ERR_NO_LABELS,
    ERR_ONE_CLASS,
    KEYS,
    Scaler,
    check_frame,
    input_columns,
    labels_for,
    layout,
    pad,
    pad_targets,
)

if TYPE_CHECKING:
    from edsight.models._sequence_net import GRURisk

log = logging.getLogger(__name__)

__all__ = ["SequenceRiskModel", "load_sequence_model", "save_sequence_model"]

SequenceCalibration = Literal["isotonic", "sigmoid", "none"]
CALIBRATIONS: tuple[str, ...] = ("isotonic", "sigmoid", "none")
FORMAT_VERSION = 1
MODEL_KIND = "sequence_gru"
WEIGHTS_FILE = "weights.pt"
METADATA_FILE = "metadata.json"

ERR_TORCH = "the sequence model needs PyTorch; install it with: pip install 'edsight[sequence]'"
ERR_PARAM = "{0} must be {1}, got {2!r}"
ERR_CALIBRATION = "calibration must be one of {0}, got {1!r}"
ERR_NEEDS_HOLDOUT = "calibration {0!r} needs held-out students: set calibration_fraction in (0, 0.5]"
ERR_TARGET_NEEDED = "target is required when labels are given as a frame (e.g. target='will_dropout')"
ERR_DEVICE = "device {0!r} is not usable here ({1})"
ERR_FEW_STUDENTS = "only {0} labelled students; holding out {1:.0%} for calibration needs at least {2}"
ERR_HOLDOUT_CLASSES = "the held-out students' labels of {0!r} have only one class; cannot calibrate"
ERR_NOT_FITTED = "the sequence model is not fitted yet"
ERR_NO_DIR = "no saved sequence model in {0} ({1} is missing)"
ERR_TAMPERED = "{0} does not match its recorded checksum (modified or corrupt)"
ERR_WEIGHTS = "{0} is not a tensor-only weights file ({1})"
ERR_METADATA = "{0} is not a sequence-model metadata file ({1})"


def _torch_net() -> Any:
    """The network module, importing PyTorch only when a sequence model is actually used."""
    try:
        from edsight.models import _sequence_net
    except ImportError as exc:
        raise EdsightError(ERR_TORCH) from exc
    return _sequence_net


class SequenceRiskModel:
    """Calibrated week-by-week risk from a student-section's weekly history (GRU).

    ``max_weeks`` bounds the week numbers accepted (1..max_weeks); ``calibration_fraction`` of
    the labelled students (grouped by ``person_id``, stratified on the outcome) is held out
    for early stopping and calibration. ``feature_columns=None`` uses every numeric column
    except keys, dates and label columns. ``n_threads`` caps PyTorch threads during fit and
    predict (1 is deterministic and fastest on a shared machine).
    """

    def __init__(
        self,
        *,
        hidden_size: int = 32,
        epochs: int = 30,
        lr: float = 3e-3,
        batch_size: int = 128,
        weight_decay: float = 1e-4,
        patience: int = 4,
        calibration: SequenceCalibration = "isotonic",
        calibration_fraction: float = 0.2,
        max_weeks: int = 60,
        feature_columns: Sequence[str] | None = None,
        seed: int = 0,
        n_threads: int = 1,
        device: str = "cpu",
    ) -> None:
        self.hidden_size = hidden_size
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.patience = patience
        self.calibration = calibration
        self.calibration_fraction = calibration_fraction
        self.max_weeks = max_weeks
        self.feature_columns = feature_columns
        self.seed = seed
        self.n_threads = n_threads
        self.device = device

    # -- validation ---------------------------------------------------------------------
    def _check_params(self) -> None:
        def positive_int(name: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInput(ERR_PARAM.format(name, "a positive integer", value))

        for name in ("hidden_size", "epochs", "batch_size", "patience", "max_weeks", "n_threads"):
            positive_int(name)
        if not (isinstance(self.lr, float | int) and self.lr > 0):
            raise InvalidInput(ERR_PARAM.format("lr", "a positive number", self.lr))
        if not (isinstance(self.weight_decay, float | int) and self.weight_decay >= 0):
            raise InvalidInput(ERR_PARAM.format("weight_decay", "a number >= 0", self.weight_decay))
        if self.calibration not in CALIBRATIONS:
            raise InvalidInput(ERR_CALIBRATION.format(CALIBRATIONS, self.calibration))
        frac = self.calibration_fraction
        if not (isinstance(frac, float | int) and 0 <= frac <= 0.5):
            raise InvalidInput(ERR_PARAM.format("calibration_fraction", "a number in [0, 0.5]", frac))
        if self.calibration != "none" and frac == 0:
            raise InvalidInput(ERR_NEEDS_HOLDOUT.format(self.calibration))
        self._check_device()

    def _check_device(self) -> None:
        import torch

        try:
            dev = torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise InvalidInput(ERR_DEVICE.format(self.device, exc)) from exc
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise InvalidInput(ERR_DEVICE.format(self.device, "CUDA is not available"))
        if dev.type not in ("cpu", "cuda"):
            raise InvalidInput(ERR_DEVICE.format(self.device, "use 'cpu' or 'cuda'"))

    # -- fitting ------------------------------------------------------------------------
    def _held_out(self, person: NDArray[Any], y: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Rows of students held out for early stopping and calibration (grouped, stratified)."""
        if self.calibration_fraction == 0:
            return np.zeros(len(person), dtype=bool)
        labelled = ~np.isnan(y)
        n_splits = max(2, round(1 / self.calibration_fraction))
        people = pd.unique(person[labelled])
        if len(people) < 2 * n_splits:
            raise InvalidInput(ERR_FEW_STUDENTS.format(len(people), self.calibration_fraction, 2 * n_splits))
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=self.seed)
        lab_person = person[labelled]
        _, val_idx = next(splitter.split(np.zeros((labelled.sum(), 1)), y[labelled], lab_person))
        return np.isin(person, pd.unique(lab_person[val_idx]))

    def _fit_calibrator(self, raw: NDArray[np.float64], y: NDArray[np.float64]) -> dict[str, Any]:
        if self.calibration == "none":
            return {"kind": "none"}
        if y.min() == y.max():
            raise InvalidInput(ERR_HOLDOUT_CLASSES.format(self.target_))
        if self.calibration == "isotonic":
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
            return {
                "kind": "isotonic",
                "x": [float(v) for v in iso.X_thresholds_],
                "y": [float(v) for v in iso.y_thresholds_],
            }
        platt = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(raw)[:, None], y.astype(int))
        return {"kind": "sigmoid", "a": float(platt.coef_[0, 0]), "b": float(platt.intercept_[0])}

    def fit(
        self,
        features: pd.DataFrame,
        labels_or_y: pd.DataFrame | ArrayLike,
        *,
        target: str | None = None,
    ) -> SequenceRiskModel:
        """Fit on weekly ``features`` and a labels frame (joined on the keys) or aligned 0/1/NaN ``y``.

        Rows without a label (e.g. the last weeks, which lack a full horizon) still feed the
        history of later weeks; only labelled weeks enter the loss.
        """
        net = _torch_net()
        self._check_params()
        frame = check_frame(features)
        if isinstance(labels_or_y, pd.DataFrame) and target is None:
            raise InvalidInput(ERR_TARGET_NEEDED)
        self.target_ = target or "outcome"
        y = labels_for(frame, labels_or_y, self.target_)
        labelled = ~np.isnan(y)
        if not labelled.any():
            raise InvalidInput(ERR_NO_LABELS.format(self.target_))
        if y[labelled].min() == y[labelled].max():
            raise InvalidInput(ERR_ONE_CLASS.format(self.target_))
        where = layout(frame, self.max_weeks)
        columns = input_columns(frame, self.feature_columns, target)
        self.scaler_ = Scaler.fit(frame, columns)
        x = pad(self.scaler_.transform(frame), where)
        yy = pad_targets(y, where)
        held_rows = self._held_out(frame["person_id"].to_numpy(), y)
        held = np.zeros(where.n_seq, dtype=bool)
        held[where.seq[held_rows]] = True
        with net.torch_threads(self.n_threads):
            network, history = net.train_network(
                x[~held],
                yy[~held],
                x[held] if held.any() else None,
                yy[held] if held.any() else None,
                hidden_size=self.hidden_size,
                epochs=self.epochs,
                lr=float(self.lr),
                batch_size=self.batch_size,
                weight_decay=float(self.weight_decay),
                patience=self.patience,
                seed=self.seed,
                device=self.device,
            )
            self.network_: GRURisk = network
            self.calibrator_: dict[str, Any] = {"kind": "none"}
            if held.any() and self.calibration != "none":
                raw = net.predict_network(network, x[held], self.device)
                mask = ~np.isnan(yy[held])
                self.calibrator_ = self._fit_calibrator(raw[mask], yy[held][mask].astype(np.float64))
        self.feature_names_in_ = list(columns)
        self.input_names_ = self.scaler_.names
        self.classes_ = np.array([0, 1])
        self.training_log_ = {
            "train_loss": history.train_loss,
            "val_loss": history.val_loss,
            "best_epoch": history.best_epoch,
            "epochs_run": len(history.train_loss),
            "seconds": history.seconds,
            "n_sequences": int(where.n_seq),
            "n_held_out_sequences": int(held.sum()),
            "n_labelled_rows": int(labelled.sum()),
        }
        log.info(
            "fitted GRU for %s on %d sequences (%d held out) in %.1fs, best epoch %d",
            self.target_,
            where.n_seq - int(held.sum()),
            int(held.sum()),
            history.seconds,
            history.best_epoch + 1,
        )
        return self

    # -- prediction ---------------------------------------------------------------------
    def _raw(self, features: pd.DataFrame) -> NDArray[np.float64]:
        if not hasattr(self, "network_"):
            raise InvalidInput(ERR_NOT_FITTED)
        net = _torch_net()
        frame = check_frame(features)
        where = layout(frame, self.max_weeks)
        x = pad(self.scaler_.transform(frame), where)
        with net.torch_threads(self.n_threads):
            scores = net.predict_network(self.network_, x, self.device)
        return np.asarray(scores[where.seq, where.slot], dtype=np.float64)

    def predict_proba(self, features: pd.DataFrame) -> NDArray[np.float64]:
        """Calibrated probabilities per feature row, shape (n, 2); column 1 is the outcome.

        The row of week ``w`` is scored from the rows of weeks ``<= w`` of the same
        (person_id, section_id) present in ``features``; rows may come in any order.
        """
        raw = self._raw(features)  # checks fitted state first
        p = RiskModel._calibrate(self.calibrator_, raw)
        return np.column_stack([1.0 - p, p])

    def predict(self, features: pd.DataFrame, threshold: float = 0.5) -> NDArray[np.int64]:
        """0/1 flag where the calibrated probability reaches ``threshold``."""
        return (self.predict_proba(features)[:, 1] >= threshold).astype(np.int64)

    def predict_frame(self, features: pd.DataFrame) -> pd.DataFrame:
        """``person_id, section_id, week, probability`` for every row of ``features``."""
        out = check_frame(features)[list(KEYS)].copy()
        out["probability"] = self.predict_proba(features)[:, 1]
        return out

    def params(self) -> dict[str, Any]:
        """Constructor parameters (for metadata)."""
        out = {
            k: getattr(self, k)
            for k in (
                "hidden_size",
                "epochs",
                "lr",
                "batch_size",
                "weight_decay",
                "patience",
                "calibration",
                "calibration_fraction",
                "max_weeks",
                "seed",
                "n_threads",
                "device",
            )
        }
        out["feature_columns"] = None if self.feature_columns is None else list(self.feature_columns)
        return out


# -- persistence ------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_sequence_model(model: SequenceRiskModel, directory: Path | str) -> Path:
    """Write ``weights.pt`` (tensors only) and ``metadata.json`` into ``directory``; return it."""
    if not hasattr(model, "network_"):
        raise InvalidInput(ERR_NOT_FITTED)
    import torch

    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    weights = target / WEIGHTS_FILE
    state = {k: v.detach().cpu().contiguous() for k, v in model.network_.state_dict().items()}
    torch.save(state, weights)
    metadata = {
        "format_version": FORMAT_VERSION,
        "kind": MODEL_KIND,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "edsight_version": __version__,
        "torch_version": str(torch.__version__),
        "params": model.params(),
        "target": model.target_,
        "features": model.feature_names_in_,
        "inputs": model.input_names_,
        "scaler": model.scaler_.to_dict(),
        "calibrator": model.calibrator_,
        "training": model.training_log_,
        "artifacts": {WEIGHTS_FILE: _sha256(weights)},
    }
    (target / METADATA_FILE).write_text(json.dumps(metadata, indent=2), encoding="utf-8")
    log.info("saved sequence model for %s to %s", model.target_, target)
    return target


def load_sequence_model(directory: Path | str, *, device: str | None = None) -> SequenceRiskModel:
    """Load a model written by :func:`save_sequence_model`; checksums are verified first.

    Weights are read with ``torch.load(weights_only=True)``: the file can hold tensors only,
    so loading runs no code from it. ``device`` overrides the saved one (e.g. ``"cpu"``).
    """
    net = _torch_net()
    import torch

    source = Path(directory)
    meta_path = source / METADATA_FILE
    if not meta_path.is_file():
        raise InvalidInput(ERR_NO_DIR.format(source, METADATA_FILE))
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("kind") != MODEL_KIND:
            raise KeyError(f"kind is {meta.get('kind')!r}, expected {MODEL_KIND!r}")
        params = dict(meta["params"])
        artifacts = dict(meta["artifacts"])
        scaler = Scaler.from_dict(meta["scaler"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(ERR_METADATA.format(meta_path, exc)) from exc
    for name, digest in artifacts.items():
        path = source / name
        if not path.is_file():
            raise InvalidInput(ERR_NO_DIR.format(source, name))
        if _sha256(path) != digest:
            raise InvalidInput(ERR_TAMPERED.format(path))
    if device is not None:
        params["device"] = device
    model = SequenceRiskModel(**params)
    model._check_device()
    try:
        state = torch.load(source / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise InvalidInput(ERR_WEIGHTS.format(source / WEIGHTS_FILE, exc)) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InvalidInput(ERR_WEIGHTS.format(source / WEIGHTS_FILE, "not a mapping of tensors"))
    model.network_ = net.build_network(scaler.width, int(params["hidden_size"]), state, model.device)
    model.scaler_ = scaler
    model.target_ = str(meta["target"])
    model.feature_names_in_ = list(meta["features"])
    model.input_names_ = scaler.names
    model.calibrator_ = dict(meta["calibrator"])
    model.training_log_ = dict(meta.get("training", {}))
    model.classes_ = np.array([0, 1])
    return model
