"""The recurrent network and its training loop (private; needs PyTorch, imported lazily).

The network reads a student-section's weeks in order with a one-way GRU; the risk logit of
week ``w`` comes from the GRU state after week ``w`` concatenated with week ``w``'s own
inputs. Nothing runs backwards and padding sits only *after* a sequence's last week, so the
score of week ``w`` is a function of weeks ``1..w`` alone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

log = logging.getLogger(__name__)

PREDICT_BATCH = 4096


class GRURisk(nn.Module):
    """One-layer unidirectional GRU with a small head on ``[state_w, inputs_w]``."""

    def __init__(self, n_inputs: int, hidden_size: int) -> None:
        super().__init__()
        self.gru = nn.GRU(n_inputs, hidden_size, batch_first=True)
        self.head = nn.Sequential(
            nn.Linear(hidden_size + n_inputs, hidden_size), nn.ReLU(), nn.Linear(hidden_size, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, weeks) for inputs of shape (batch, weeks, n_inputs)."""
        states, _ = self.gru(x)
        return self.head(torch.cat([states, x], dim=-1)).squeeze(-1)


@dataclass
class TrainingLog:
    """What training did: losses per epoch and the epoch whose weights were kept."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` intra-op threads, restoring the caller's setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _masked_loss(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, int]:
    mask = ~torch.isnan(target)
    n = int(mask.sum())
    if n == 0:
        return logits.sum() * 0.0, 0
    loss = nn.functional.binary_cross_entropy_with_logits(logits[mask], target[mask], reduction="sum")
    return loss, n


def _mean_loss(model: GRURisk, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, x.shape[0], batch):
            loss, n = _masked_loss(model(x[start : start + batch]), y[start : start + batch])
            total += float(loss)
            count += n
    return total / count if count else math.nan


def train_network(
    x_train: NDArray[np.float32],
    y_train: NDArray[np.float32],
    x_val: NDArray[np.float32] | None,
    y_val: NDArray[np.float32] | None,
    *,
    hidden_size: int,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    patience: int,
    seed: int,
    device: str,
) -> tuple[GRURisk, TrainingLog]:
    """Adam on the masked per-week cross-entropy; keeps the epoch with the lowest held-out loss."""
    import time

    started = time.perf_counter()
    torch.manual_seed(seed)
    shuffle = torch.Generator().manual_seed(seed)
    dev = torch.device(device)
    model = GRURisk(x_train.shape[2], hidden_size).to(dev)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    xt = torch.from_numpy(x_train).to(dev)
    yt = torch.from_numpy(y_train).to(dev)
    xv = None if x_val is None else torch.from_numpy(x_val).to(dev)
    yv = None if y_val is None else torch.from_numpy(y_val).to(dev)
    history = TrainingLog()
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best = math.inf
    stale = 0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(xt.shape[0], generator=shuffle).to(dev)
        total, count = 0.0, 0
        for start in range(0, xt.shape[0], batch_size):
            idx = order[start : start + batch_size]
            loss, n = _masked_loss(model(xt[idx]), yt[idx])
            if n == 0:
                continue
            optimiser.zero_grad()
            (loss / n).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimiser.step()
            total += float(loss.detach())
            count += n
        history.train_loss.append(total / count if count else math.nan)
        if xv is None or yv is None:
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            history.best_epoch = epoch
            continue
        val = _mean_loss(model, xv, yv, PREDICT_BATCH)
        history.val_loss.append(val)
        log.debug("epoch %d: train %.4f, held-out %.4f", epoch + 1, history.train_loss[-1], val)
        if val < best - 1e-5:
            best, stale, history.best_epoch = val, 0, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    history.seconds = time.perf_counter() - started
    return model, history


def predict_network(model: GRURisk, x: NDArray[np.float32], device: str) -> NDArray[np.float64]:
    """Uncalibrated probabilities of shape (sequences, weeks)."""
    dev = torch.device(device)
    out = np.empty(x.shape[:2], dtype=np.float64)
    model.eval()
    with torch.no_grad():
        for start in range(0, x.shape[0], PREDICT_BATCH):
            batch = torch.from_numpy(x[start : start + PREDICT_BATCH]).to(dev)
            out[start : start + PREDICT_BATCH] = torch.sigmoid(model(batch)).double().cpu().numpy()
    return out


def build_network(n_inputs: int, hidden_size: int, state: dict[str, torch.Tensor], device: str) -> GRURisk:
    """A network with saved weights (shapes are checked by ``load_state_dict``)."""
    model = GRURisk(n_inputs, hidden_size)
    model.load_state_dict(state)
    return model.to(torch.device(device)).eval()
